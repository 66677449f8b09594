/**
 * The proxy's configuration: what `startProxy` takes, its defaults, and their validation.
 * The proxy is a separate program; this module knows nothing about the inventory
 * (see `inventory-config.ts` for the mapping from `inventory.yaml`).
 */
import { BlockList, isIP } from 'node:net';
import pino, { type Logger } from 'pino';

import type { ListenAddress } from '../config/proxy-section.ts';

export type { ListenAddress };

/** One upstream instance the proxy balances over. */
export interface UpstreamConfig {
  /** Unique instance name; it is also what the affinity cookie pins to. */
  name: string;
  /** Base URL of the app on the instance, e.g. `http://127.0.0.11:4100` (http only). */
  url: string;
  /** Relative share of new work, an integer 1..1000. Default 1. */
  weight?: number;
  /** Per-instance limit on in-flight requests for new (unpinned) work. Default: none. */
  maxConnections?: number;
}

/** Active health checks. A change of state needs `rise` (or `fall`) results in a row. */
export interface HealthCheckConfig {
  /** Time between two checks of one instance, ms. */
  intervalMs: number;
  /** A check that has not answered within this many ms failed. */
  timeoutMs: number;
  /** Consecutive passing checks before an unhealthy instance gets traffic again. */
  rise: number;
  /** Consecutive failing checks before a healthy instance stops getting traffic. */
  fall: number;
}

/** Timeouts of the request path. */
export interface ProxyTimeouts {
  /** Connecting to an instance, ms. A connect timeout counts as a connect failure (retried elsewhere). */
  connectMs: number;
  /**
   * Waiting for the response to start, ms: no response headers for this long (socket inactivity, so a
   * slow upload that keeps sending does not trip it) answers 504.
   */
  responseMs: number;
  /**
   * Inactivity while the response body streams, ms: an upstream that stalls mid-body this long has its
   * response cut. Keep it above the heartbeat interval of any SSE stream.
   * With the undici engine both `responseMs` and `idleMs` run on undici's coarse timers (about 0.5 s
   * ticks): they fire up to about a second late, never early.
   */
  idleMs: number;
  /**
   * Idle keep-alive sockets to the upstreams are closed after this many ms. It must stay below the
   * app's `keepAliveTimeout` (65 s in the reference app) so the proxy never reuses a socket the app is
   * closing at the same moment (the classic ECONNRESET on reuse).
   */
  upstreamIdleMs: number;
  /** How long `close()` lets in-flight requests finish before cutting connections, ms. */
  shutdownGraceMs: number;
}

/** Everything `startProxy` needs. Only `listen`, `adminListen`, `adminToken`, `affinitySecret` and `upstreams` are required. */
export interface ProxyConfig {
  listen: ListenAddress;
  adminListen: ListenAddress;
  /** Bearer token for the admin API. At least 16 characters. */
  adminToken: string;
  /** HMAC key for the affinity cookie. At least 16 characters. */
  affinitySecret: string;
  upstreams: UpstreamConfig[];
  /** Path polled by active health checks; 200 means ready (app contract). Default `/healthz`. */
  healthPath?: string;
  /** The app's version endpoint (app contract), read by the fleet dashboard. Default `/version`. */
  versionPath?: string;
  healthCheck?: Partial<HealthCheckConfig>;
  timeouts?: Partial<ProxyTimeouts>;
  /**
   * How requests are sent to an instance: `undici` (default; connection pools, about twice the
   * throughput) or `http-proxy-3` (node:http agent). WebSocket upgrades use http-proxy-3 in both.
   */
  engine?: ProxyEngine;
  /** Default `round_robin` (smooth weighted). `least_connections` suits requests of very uneven length. */
  balance?: BalanceAlgorithm;
  passiveEjection?: Partial<PassiveEjectionConfig>;
  retries?: Partial<RetryConfig>;
  hold?: Partial<HoldConfig>;
  /**
   * Addresses or CIDR networks (e.g. `10.0.0.0/8`) of proxies in front of this one. Only from them are
   * incoming X-Forwarded-For/-Proto/-Host trusted and extended; from anyone else they are replaced,
   * so a client cannot spoof its address to the app. Default: none.
   */
  trustedProxies?: string[];
  /** POST paths counted as uploads in the metrics (upload success rate). Default `['/api/upload']`. */
  uploadPaths?: string[];
  /** Name of the affinity cookie. Default `lockstep_affinity`. */
  affinityCookieName?: string;
  /** The admin API binds to loopback only unless this is true. */
  allowNonLoopbackAdmin?: boolean;
  /** pino logger for state changes; silent by default. Nothing is logged per request. */
  logger?: Logger;
}

/** `ProxyConfig` with every default applied and every value checked. */
export interface ResolvedProxyConfig {
  listen: ListenAddress;
  adminListen: ListenAddress;
  adminToken: string;
  affinitySecret: string;
  upstreams: UpstreamConfig[];
  healthPath: string;
  versionPath: string;
  healthCheck: HealthCheckConfig;
  timeouts: ProxyTimeouts;
  engine: ProxyEngine;
  balance: BalanceAlgorithm;
  passiveEjection: PassiveEjectionConfig;
  retries: RetryConfig;
  hold: HoldConfig;
  /** null when no network is trusted, so the hot path can skip the lookup. */
  trustedProxies: BlockList | null;
  uploadPaths: Set<string>;
  affinityCookieName: string;
  allowNonLoopbackAdmin: boolean;
  logger: Logger;
}

export const DEFAULT_HEALTH_CHECK: HealthCheckConfig = { intervalMs: 1000, timeoutMs: 1000, rise: 2, fall: 2 };
export const DEFAULT_TIMEOUTS: ProxyTimeouts = {
  connectMs: 5_000,
  responseMs: 60_000,
  idleMs: 120_000,
  upstreamIdleMs: 30_000,
  shutdownGraceMs: 10_000,
};

export type ProxyEngine = 'undici' | 'http-proxy-3';

/** How new work is spread. Both honour weights. */
export type BalanceAlgorithm = 'round_robin' | 'least_connections';

/** Passive ejection: requests failing in a row take an instance out, with growing back-off. */
export interface PassiveEjectionConfig {
  /** Failures in a row (connect errors, resets, timeouts, 5xx answers) that eject. 0 turns it off. */
  consecutiveFailures: number;
  /** First back-off, ms; doubled for each failed probe in a row. */
  baseEjectMs: number;
  /** Upper bound of the back-off, ms. */
  maxEjectMs: number;
}

/** Retries on another instance. */
export interface RetryConfig {
  /** Attempts per request in total (1 = no retry). */
  maxAttempts: number;
}

/** Requests pinned to an instance that drains for a restart wait for it rather than lose their session. */
export interface HoldConfig {
  /** How long a pinned request waits for its draining instance, ms; after that it is re-pinned. 0: never hold. */
  timeoutMs: number;
  /** Held requests per instance beyond which new ones are re-pinned at once (memory bound). */
  maxPerInstance: number;
}

export const DEFAULT_PASSIVE_EJECTION: PassiveEjectionConfig = { consecutiveFailures: 5, baseEjectMs: 2_000, maxEjectMs: 60_000 };
export const DEFAULT_RETRY: RetryConfig = { maxAttempts: 3 };
export const DEFAULT_HOLD: HoldConfig = { timeoutMs: 15_000, maxPerInstance: 1_000 };

/** Raised for a configuration `startProxy` cannot run with. */
export class ProxyConfigError extends Error {
  readonly code = 'LOCKSTEP_PROXY_CONFIG';
}

const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/i;

function checkListen(what: string, addr: ListenAddress): ListenAddress {
  if (!addr || typeof addr.host !== 'string' || addr.host === '') {
    throw new ProxyConfigError(`${what}.host is required`);
  }
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 65535) {
    throw new ProxyConfigError(`${what}.port must be an integer 0..65535 (got ${String(addr.port)})`);
  }
  return { host: addr.host, port: addr.port };
}

function positiveInt(what: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) throw new ProxyConfigError(`${what} must be an integer >= ${min} (got ${String(v)})`);
  return v;
}

/** True for 127.0.0.0/8, ::1 and `localhost`: the only addresses the admin API binds to by default. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const h = host.replace(/^\[|\]$/g, '');
  return h === '::1' || h.startsWith('::ffff:127.');
}

/**
 * Check upstream entries: unique valid names, http URLs without path.
 * @throws ProxyConfigError naming the offending entry.
 */
export function validateUpstreams(upstreams: UpstreamConfig[]): UpstreamConfig[] {
  if (!Array.isArray(upstreams)) throw new ProxyConfigError('upstreams must be a list');
  const seen = new Set<string>();
  return upstreams.map((u, i) => {
    if (!u || typeof u.name !== 'string' || !NAME_RE.test(u.name)) {
      throw new ProxyConfigError(`upstreams[${i}].name must use letters, digits, ".", "_" or "-"`);
    }
    if (seen.has(u.name)) throw new ProxyConfigError(`upstreams[${i}]: duplicate name "${u.name}"`);
    seen.add(u.name);
    let url: URL;
    try {
      url = new URL(u.url);
    } catch {
      throw new ProxyConfigError(`upstreams[${i}] (${u.name}): invalid url "${String(u.url)}"`);
    }
    if (url.protocol !== 'http:') throw new ProxyConfigError(`upstreams[${i}] (${u.name}): only http:// upstreams are supported`);
    const weight = u.weight ?? 1;
    if (!Number.isInteger(weight) || weight < 1 || weight > 1000) throw new ProxyConfigError(`upstreams[${i}] (${u.name}): weight must be an integer 1..1000`);
    const maxConnections = u.maxConnections;
    if (maxConnections !== undefined && (!Number.isInteger(maxConnections) || maxConnections < 1)) {
      throw new ProxyConfigError(`upstreams[${i}] (${u.name}): maxConnections must be a positive integer`);
    }
    return maxConnections === undefined ? { name: u.name, url: url.origin, weight } : { name: u.name, url: url.origin, weight, maxConnections };
  });
}

/**
 * Apply defaults and validate.
 * @throws ProxyConfigError for a missing or out-of-range value, a short secret, a bad trusted network,
 *   or a non-loopback admin address without `allowNonLoopbackAdmin`.
 */
export function resolveProxyConfig(config: ProxyConfig): ResolvedProxyConfig {
  const listen = checkListen('listen', config.listen);
  const adminListen = checkListen('adminListen', config.adminListen);
  if (!config.allowNonLoopbackAdmin && !isLoopbackHost(adminListen.host)) {
    throw new ProxyConfigError(
      `refusing to bind the admin API to ${adminListen.host}: it is not a loopback address ` +
        '(set allowNonLoopbackAdmin to expose it, and protect the network)',
    );
  }
  if (typeof config.adminToken !== 'string' || config.adminToken.length < 16) {
    throw new ProxyConfigError('adminToken must be at least 16 characters');
  }
  if (typeof config.affinitySecret !== 'string' || config.affinitySecret.length < 16) {
    throw new ProxyConfigError('affinitySecret must be at least 16 characters');
  }
  const hc = { ...DEFAULT_HEALTH_CHECK, ...config.healthCheck };
  const healthCheck: HealthCheckConfig = {
    intervalMs: positiveInt('healthCheck.intervalMs', hc.intervalMs, 10),
    timeoutMs: positiveInt('healthCheck.timeoutMs', hc.timeoutMs, 10),
    rise: positiveInt('healthCheck.rise', hc.rise, 1),
    fall: positiveInt('healthCheck.fall', hc.fall, 1),
  };
  const t = { ...DEFAULT_TIMEOUTS, ...config.timeouts };
  const timeouts: ProxyTimeouts = {
    connectMs: positiveInt('timeouts.connectMs', t.connectMs, 1),
    responseMs: positiveInt('timeouts.responseMs', t.responseMs, 1),
    idleMs: positiveInt('timeouts.idleMs', t.idleMs, 1),
    upstreamIdleMs: positiveInt('timeouts.upstreamIdleMs', t.upstreamIdleMs, 100),
    shutdownGraceMs: positiveInt('timeouts.shutdownGraceMs', t.shutdownGraceMs, 0),
  };
  const engine = config.engine ?? 'undici';
  if (engine !== 'undici' && engine !== 'http-proxy-3') throw new ProxyConfigError('engine must be undici or http-proxy-3');
  const balance = config.balance ?? 'round_robin';
  if (balance !== 'round_robin' && balance !== 'least_connections') throw new ProxyConfigError(`balance must be round_robin or least_connections`);
  const pe = { ...DEFAULT_PASSIVE_EJECTION, ...config.passiveEjection };
  const passiveEjection: PassiveEjectionConfig = {
    consecutiveFailures: positiveInt('passiveEjection.consecutiveFailures', pe.consecutiveFailures, 0),
    baseEjectMs: positiveInt('passiveEjection.baseEjectMs', pe.baseEjectMs, 1),
    maxEjectMs: positiveInt('passiveEjection.maxEjectMs', pe.maxEjectMs, 1),
  };
  const retries: RetryConfig = { maxAttempts: positiveInt('retries.maxAttempts', config.retries?.maxAttempts ?? DEFAULT_RETRY.maxAttempts, 1) };
  const ho = { ...DEFAULT_HOLD, ...config.hold };
  const hold: HoldConfig = {
    timeoutMs: positiveInt('hold.timeoutMs', ho.timeoutMs, 0),
    maxPerInstance: positiveInt('hold.maxPerInstance', ho.maxPerInstance, 0),
  };
  const healthPath = config.healthPath ?? '/healthz';
  if (!healthPath.startsWith('/')) throw new ProxyConfigError('healthPath must start with "/"');
  const versionPath = config.versionPath ?? '/version';
  if (!versionPath.startsWith('/')) throw new ProxyConfigError('versionPath must start with "/"');
  let trustedProxies: BlockList | null = null;
  for (const net of config.trustedProxies ?? []) {
    trustedProxies ??= new BlockList();
    const [addr, prefix] = net.split('/');
    const family = isIP(addr ?? '');
    if (family === 0) throw new ProxyConfigError(`trustedProxies: "${net}" is not an address or CIDR network`);
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) trustedProxies.addAddress(addr!, type);
    else trustedProxies.addSubnet(addr!, positiveInt(`trustedProxies "${net}" prefix`, Number(prefix), 0), type);
  }
  const affinityCookieName = config.affinityCookieName ?? 'lockstep_affinity';
  if (!/^[A-Za-z0-9_-]+$/.test(affinityCookieName)) throw new ProxyConfigError('affinityCookieName: use letters, digits, "_" or "-"');
  return {
    listen,
    adminListen,
    adminToken: config.adminToken,
    affinitySecret: config.affinitySecret,
    upstreams: validateUpstreams(config.upstreams),
    healthPath,
    versionPath,
    healthCheck,
    timeouts,
    engine,
    balance,
    passiveEjection,
    retries,
    hold,
    trustedProxies,
    uploadPaths: new Set(config.uploadPaths ?? ['/api/upload']),
    affinityCookieName,
    allowNonLoopbackAdmin: config.allowNonLoopbackAdmin === true,
    logger: config.logger ?? pino({ level: 'silent' }),
  };
}
