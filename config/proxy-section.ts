/**
 * The inventory's `proxy` section as both programs read it: the resolved section with its
 * defaults, listen addresses, and where the two proxy secrets come from. The proxy builds its
 * configuration from these; the deployer uses them to reach the proxy's admin API.
 */
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from './errors.ts';
import { proxySectionDefaults, type Inventory } from './inventory.ts';
import { resolveSecret, type SecretSource } from './secrets.ts';

/** A listen address. `port: 0` asks the OS for a free port (the bound port is reported back). */
export interface ListenAddress {
  host: string;
  port: number;
}

/** The resolved `proxy` section: the inventory's, or the defaults. */
export function proxySection(inventory: Inventory): NonNullable<Inventory['proxy']> {
  if (inventory.proxy) return inventory.proxy;
  const defaults = proxySectionDefaults();
  return (
    {
      ...defaults,
      adminTokenFile: resolve(inventory.dir, defaults.admin_token_file),
    }
  );
}

/** `host:port` (as validated by the inventory schema) to a ListenAddress. */
export function parseHostPort(value: string, field: string, file?: string): ListenAddress {
  const at = value.lastIndexOf(':');
  const host = value.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(value.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${file ?? 'inventory'}: field "${field}": "${value}" is not host:port`, { file, field });
  }
  return { host, port };
}

/** File holding the affinity secret when its env var is unset: beside the admin token file. */
export function affinitySecretFile(inventory: Inventory): string {
  return join(dirname(proxySection(inventory).adminTokenFile), 'affinity-secret');
}

/**
 * Resolve the admin token as the proxy does: env `proxy.admin_token_env`, else the file
 * `proxy.admin_token_file` (created with a random token, mode 0600, when missing).
 * @throws ConfigError when the file cannot be read or created.
 */
export function adminTokenFromInventory(inventory: Inventory, env: NodeJS.ProcessEnv = process.env): SecretSource {
  const section = proxySection(inventory);
  return resolveSecret(section.admin_token_env, section.adminTokenFile, env);
}

