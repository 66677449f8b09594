/**
 * From `inventory.yaml` to a `ProxyConfig`: addresses and health checks from the `proxy` section,
 * upstreams from the instances, the health path and upload paths from the app contract, the
 * two secrets from the environment or their files, the admin TLS files and the state directory.
 */
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Inventory } from '../config/inventory.ts';
import { affinitySecretFile, parseHostPort, proxySection } from '../config/proxy-section.ts';
import { resolveSecret } from '../config/secrets.ts';
import type { ProxyConfig, UpstreamConfig } from './config.ts';

/** The upstream list the proxy balances over: one per inventory instance, at its app URL. */
export function upstreamsFromInventory(inventory: Inventory): UpstreamConfig[] {
  return inventory.instances.map((i) => ({
    name: i.name,
    url: i.url,
    weight: i.weight,
    ...(i.maxConnections !== undefined ? { maxConnections: i.maxConnections } : {}),
  }));
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
    versionPath: inventory.app.version_path,
    healthCheck: { intervalMs: hc.interval_ms, timeoutMs: hc.timeout_ms, rise: hc.rise, fall: hc.fall },
    uploadPaths: inventory.app.checks.upload_paths,
    balance: section.balance,
    // `engine: undici | http-proxy-3` is the older spelling of `engine: lockstep` with that forwarder.
    engine: section.engine === 'undici' || section.engine === 'http-proxy-3' ? section.engine : section.forwarder,
    timeouts: {
      connectMs: section.connect_timeout_ms,
      responseMs: section.response_timeout_ms,
      idleMs: section.idle_timeout_ms,
      upstreamIdleMs: section.upstream_keepalive_ms,
    },
    retries: { maxAttempts: section.retries },
    // Shared sessions (one Redis for the fleet): a drained instance's clients move at once.
    hold: { timeoutMs: section.hold_timeout_ms, sessionsShared: section.sessions_shared ?? inventory.app.session_store === 'redis' },
    passiveEjection: { consecutiveFailures: section.eject_after_failures },
    trustedProxies: section.trusted_proxies,
    accessLog: { path: resolve(inventory.dir, section.access_log.path), sampleRate: section.access_log.sample_rate },
    ...(section.admin_tls ? { adminTls: { certFile: section.admin_tls.cert_file, keyFile: section.admin_tls.key_file } } : {}),
    stateDir: section.stateDir,
    logger,
  };
}
