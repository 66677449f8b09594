/**
 * From `inventory.yaml` to a `ProxyConfig`: addresses and health checks from the `proxy` section,
 * upstreams from the instances, the health path and upload paths from the app contract, and the
 * two secrets from the environment or their files.
 */
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError } from '../deployer/errors.ts';
import type { Inventory } from '../deployer/inventory.ts';
import type { ListenAddress, ProxyConfig, UpstreamConfig } from './config.ts';
import { resolveSecret, type SecretSource } from './secrets.ts';

/** The `proxy` section's defaults (same as the inventory schema's), for an inventory without one. */
const SECTION_DEFAULTS = {
  listen: '127.0.0.1:8080',
  admin_listen: '127.0.0.1:8081',
  admin_token_env: 'LOCKSTEP_ADMIN_TOKEN',
  admin_token_file: '.lockstep/admin-token',
  affinity_secret_env: 'LOCKSTEP_AFFINITY_SECRET',
  health_check: { interval_ms: 1000, timeout_ms: 1000, rise: 2, fall: 2 },
};

/** The resolved `proxy` section: the inventory's, or the defaults. */
export function proxySection(inventory: Inventory): NonNullable<Inventory['proxy']> {
  return (
    inventory.proxy ?? {
      ...SECTION_DEFAULTS,
      adminTokenFile: resolve(inventory.dir, SECTION_DEFAULTS.admin_token_file),
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

/** The upstream list the proxy balances over: one per inventory instance, at its app URL. */
export function upstreamsFromInventory(inventory: Inventory): UpstreamConfig[] {
  return inventory.instances.map((i) => ({ name: i.name, url: i.url }));
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

/**
 * Build the proxy configuration from an inventory.
 * @param inventory the loaded inventory (instances' `url` become the upstreams).
 * @param env environment holding the secrets' variables (default `process.env`).
 * @param logger pino logger for state changes (default silent).
 * @returns a ProxyConfig for `startProxy`. Side effect: creates missing secret files.
 * @throws ConfigError for a bad listen address or an unreadable / uncreatable secret file.
 */
export function proxyConfigFromInventory(inventory: Inventory, env: NodeJS.ProcessEnv = process.env, logger?: Logger): ProxyConfig {
  const section = proxySection(inventory);
  const hc = section.health_check;
  return {
    listen: parseHostPort(section.listen, 'proxy.listen', inventory.file),
    adminListen: parseHostPort(section.admin_listen, 'proxy.admin_listen', inventory.file),
    adminToken: resolveSecret(section.admin_token_env, section.adminTokenFile, env).value,
    affinitySecret: resolveSecret(section.affinity_secret_env, affinitySecretFile(inventory), env).value,
    upstreams: upstreamsFromInventory(inventory),
    healthPath: inventory.app.health_path,
    healthCheck: { intervalMs: hc.interval_ms, timeoutMs: hc.timeout_ms, rise: hc.rise, fall: hc.fall },
    uploadPaths: inventory.app.checks.upload_paths,
    logger,
  };
}
