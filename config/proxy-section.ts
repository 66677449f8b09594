/**
 * The inventory's `proxy` section as both programs read it: the resolved section with its
 * defaults, listen addresses, and where the two proxy secrets come from. The proxy builds its
 * configuration from these; the deployer uses them to reach the proxy's admin API.
 */
import { dirname, join } from 'node:path';
import { ConfigError } from './errors.ts';
import { proxySectionDefaults, resolveProxyPaths, type Inventory } from './inventory.ts';
import { resolveSecret, type SecretSource } from './secrets.ts';

/** A listen address. `port: 0` asks the OS for a free port (the bound port is reported back). */
export interface ListenAddress {
  host: string;
  port: number;
}

/** The resolved `proxy` section: the inventory's, or the defaults. */
export function proxySection(inventory: Inventory): NonNullable<Inventory['proxy']> {
  if (inventory.proxy) return inventory.proxy;
  return resolveProxyPaths(proxySectionDefaults(), inventory.dir);
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


/** Where and how the deployer reaches the admin API. */
export interface AdminEndpoint {
  /** Base URL, e.g. `https://10.0.0.5:8443` or `http://127.0.0.1:8081`. */
  url: string;
  /** Absolute path of the PEM CA (or pinned self-signed certificate) to verify it with; undefined: the system CAs. */
  caFile: string | undefined;
}

/**
 * The admin API's address as the deployer uses it: `proxy.admin_url` when set, else built from
 * `proxy.admin_listen` (https when `proxy.admin_tls` is set). The inventory schema has already refused
 * plain http to a non-loopback host.
 * @throws ConfigError for a bad admin_listen.
 */
export function adminEndpoint(inventory: Inventory): AdminEndpoint {
  const section = proxySection(inventory);
  if (section.admin_url !== undefined) return { url: section.admin_url.replace(/\/+$/, ''), caFile: section.admin_ca_file };
  const { host, port } = parseHostPort(section.admin_listen, 'proxy.admin_listen', inventory.file);
  const h = host.includes(':') ? `[${host}]` : host;
  return { url: `${section.admin_tls ? 'https' : 'http'}://${h}:${port}`, caFile: section.admin_ca_file };
}
