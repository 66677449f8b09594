/**
 * The proxy's configuration: what `startProxy` takes, its defaults, and its validation by a zod
 * schema (the same machinery as the inventory's, `config/inventory.ts`), whose errors name the field.
 * The proxy is a separate program; this module knows nothing about the inventory
 * (see `inventory-config.ts` for the mapping from `inventory.yaml`).
 */
import { BlockList, isIP } from 'node:net';
import type { AccessLogConfig } from './access-log.ts';
import { isLoopbackHost } from '../config/loopback.ts';
import pino, { type Logger } from 'pino';
import { z } from 'zod';

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
   * Both engines time `responseMs` and `idleMs` with native timers (undici's own run on a 0.5 s
   * clock and fired up to a second late). Every timeout is logged once: instance, phase
   * (`response`, `body`, `upgrade`), elapsed ms.
   */
  idleMs: number;
  /**
   * Idle keep-alive sockets to the upstreams are closed after this many ms (default 3000). It must
   * stay at least 2 s below every app's `keepAliveTimeout` (Node's default is 5 s; 65 s in the
   * reference app) so the proxy never reuses a socket the app is closing at the same moment (the
   * classic ECONNRESET on reuse: an idempotent request is retried, a POST answers 502).
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
  /**
   * Serve the admin API over HTTPS with this PEM certificate and key (files, read at start). Without
   * it the admin API is plain HTTP and may only bind to a loopback address (`isLoopbackHost`).
   */
  adminTls?: AdminTlsConfig;
  /**
   * Directory of the admin state file (`admin-state.json`, see control.ts): drain and disable
   * decisions are written there before the admin call answers and restored at start. Default: none
   * (state lives in memory only).
   */
  stateDir?: string;
  /** pino logger for state changes; silent by default. Nothing is logged per request. */
  logger?: Logger;
  /** The access log (access-log.ts); off when absent or null. */
  accessLog?: AccessLogConfig | null;
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
  adminTls: AdminTlsConfig | null;
  stateDir: string | null;
  logger: Logger;
  accessLog: AccessLogConfig | null;
}

export const DEFAULT_HEALTH_CHECK: HealthCheckConfig = { intervalMs: 1000, timeoutMs: 1000, rise: 2, fall: 2 };
export const DEFAULT_TIMEOUTS: ProxyTimeouts = {
  connectMs: 5_000,
  responseMs: 60_000,
  idleMs: 120_000,
  // Below Node's default keepAliveTimeout (5 s) with room for undici's coarse idle timer (up to
  // about 1 s late above 1 s): an app that drops idle connections at 5 s without a Keep-Alive hint
  // never closes a socket the proxy is reusing (a POST on it would fail, and is never retried).
  upstreamIdleMs: 3_000,
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
  /**
   * Every instance can serve every session (the app keeps them in a shared store such as Redis):
   * a request pinned to an instance that drains is moved at once instead of held. Default false.
   */
  sessionsShared: boolean;
}

export const DEFAULT_PASSIVE_EJECTION: PassiveEjectionConfig = { consecutiveFailures: 5, baseEjectMs: 2_000, maxEjectMs: 60_000 };
export const DEFAULT_RETRY: RetryConfig = { maxAttempts: 3 };
export const DEFAULT_HOLD: HoldConfig = { timeoutMs: 15_000, maxPerInstance: 1_000, sessionsShared: false };

/** Raised for a configuration `startProxy` cannot run with; the message names the field(s). */
export class ProxyConfigError extends Error {
  readonly code = 'LOCKSTEP_PROXY_CONFIG';
}

/** The admin API's TLS certificate and key, as PEM files. */
export interface AdminTlsConfig {
  certFile: string;
  keyFile: string;
}

/** True for 127.0.0.0/8, ::1 and `localhost`: the only addresses plain-HTTP admin binds to (config/loopback.ts). */
export { isLoopbackHost };

// --- the schema --------------------------------------------------------------------------------

/** An integer >= `min` (and <= `max`); the message quotes the value given. */
function int(min: number, max?: number): z.ZodNumber {
  const range = max === undefined ? `>= ${min}` : `${min}..${max}`;
  const error = (iss: { input?: unknown }): string => `must be an integer ${range} (got ${String(iss.input)})`;
  const n = z.number({ error }).int({ error }).min(min, { error });
  return max === undefined ? n : n.max(max, { error });
}

const ListenSchema = z.object(
  {
    host: z.string({ error: 'is required' }).min(1, { error: 'is required' }),
    port: int(0, 65535),
  },
  { error: 'must be {host, port}' },
);

const NAME_RE = /^[a-z0-9][a-z0-9._-]*$/i;

const UpstreamSchema = z
  .object(
    {
      name: z.string({ error: 'must use letters, digits, ".", "_" or "-"' }).regex(NAME_RE, { error: 'must use letters, digits, ".", "_" or "-"' }),
      url: z.string({ error: 'must be an http:// URL' }),
      weight: int(1, 1000).default(1),
      maxConnections: int(1).optional(),
    },
    { error: 'must be {name, url}' },
  )
  .transform((u, ctx): UpstreamConfig => {
    let url: URL;
    try {
      url = new URL(u.url);
    } catch {
      ctx.addIssue({ code: 'custom', path: ['url'], message: `invalid url "${u.url}"`, input: u.url });
      return z.NEVER;
    }
    if (url.protocol !== 'http:') {
      ctx.addIssue({ code: 'custom', path: ['url'], message: 'only http:// upstreams are supported', input: u.url });
      return z.NEVER;
    }
    const base = { name: u.name, url: url.origin, weight: u.weight };
    return u.maxConnections === undefined ? base : { ...base, maxConnections: u.maxConnections };
  });

const UpstreamsSchema = z.array(UpstreamSchema, { error: 'must be a list' }).superRefine((list, ctx) => {
  const seen = new Set<string>();
  list.forEach((u, i) => {
    if (seen.has(u.name)) ctx.addIssue({ code: 'custom', path: [i], message: `duplicate name "${u.name}"`, input: u.name });
    seen.add(u.name);
  });
});

const TrustedProxiesSchema = z.array(z.string({ error: 'must be an address or CIDR network' })).transform((nets, ctx): BlockList | null => {
  if (nets.length === 0) return null; // the hot path then skips the lookup
  const list = new BlockList();
  nets.forEach((net, i) => {
    const [addr, prefix] = net.split('/');
    const family = isIP(addr ?? '');
    if (family === 0) {
      ctx.addIssue({ code: 'custom', path: [i], message: `"${net}" is not an address or CIDR network`, input: net });
      return;
    }
    const bits = Number(prefix);
    if (prefix !== undefined && (!Number.isInteger(bits) || bits < 0 || bits > (family === 6 ? 128 : 32))) {
      ctx.addIssue({ code: 'custom', path: [i], message: `"${net}": prefix must be an integer 0..${family === 6 ? 128 : 32}`, input: net });
      return;
    }
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(addr!, type);
    else list.addSubnet(addr!, bits, type);
  });
  return list;
});

const absolutePath = z.string({ error: 'must start with "/"' }).startsWith('/', { error: 'must start with "/"' });
const secret = z.string({ error: 'must be at least 16 characters' }).min(16, { error: 'must be at least 16 characters' });

/** `ProxyConfig` in, `ResolvedProxyConfig` out (the logger is added after parsing). */
const ProxyConfigSchema = z
  .object({
    listen: ListenSchema,
    adminListen: ListenSchema,
    adminToken: secret,
    affinitySecret: secret,
    upstreams: UpstreamsSchema,
    healthPath: absolutePath.default('/healthz'),
    versionPath: absolutePath.default('/version'),
    healthCheck: z
      .object({
        intervalMs: int(10).default(DEFAULT_HEALTH_CHECK.intervalMs),
        timeoutMs: int(10).default(DEFAULT_HEALTH_CHECK.timeoutMs),
        rise: int(1).default(DEFAULT_HEALTH_CHECK.rise),
        fall: int(1).default(DEFAULT_HEALTH_CHECK.fall),
      })
      .prefault({}),
    timeouts: z
      .object({
        connectMs: int(1).default(DEFAULT_TIMEOUTS.connectMs),
        responseMs: int(1).default(DEFAULT_TIMEOUTS.responseMs),
        idleMs: int(1).default(DEFAULT_TIMEOUTS.idleMs),
        upstreamIdleMs: int(100).default(DEFAULT_TIMEOUTS.upstreamIdleMs),
        shutdownGraceMs: int(0).default(DEFAULT_TIMEOUTS.shutdownGraceMs),
      })
      .prefault({}),
    engine: z.enum(['undici', 'http-proxy-3'], { error: 'must be undici or http-proxy-3' }).default('undici'),
    balance: z.enum(['round_robin', 'least_connections'], { error: 'must be round_robin or least_connections' }).default('round_robin'),
    passiveEjection: z
      .object({
        consecutiveFailures: int(0).default(DEFAULT_PASSIVE_EJECTION.consecutiveFailures),
        baseEjectMs: int(1).default(DEFAULT_PASSIVE_EJECTION.baseEjectMs),
        maxEjectMs: int(1).default(DEFAULT_PASSIVE_EJECTION.maxEjectMs),
      })
      .prefault({}),
    retries: z.object({ maxAttempts: int(1).default(DEFAULT_RETRY.maxAttempts) }).prefault({}),
    hold: z
      .object({
        timeoutMs: int(0).default(DEFAULT_HOLD.timeoutMs),
        maxPerInstance: int(0).default(DEFAULT_HOLD.maxPerInstance),
        sessionsShared: z.boolean({ error: 'must be true or false' }).default(DEFAULT_HOLD.sessionsShared),
      })
      .prefault({}),
    trustedProxies: TrustedProxiesSchema.prefault([]),
    uploadPaths: z
      .array(z.string())
      .default(['/api/upload'])
      .transform((paths) => new Set(paths)),
    affinityCookieName: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, { error: 'use letters, digits, "_" or "-"' })
      .default('lockstep_affinity'),
    adminTls: z
      .object({ certFile: z.string({ error: 'is required' }).min(1, { error: 'is required' }), keyFile: z.string({ error: 'is required' }).min(1, { error: 'is required' }) }, { error: 'must be {certFile, keyFile}' })
      .nullable()
      .default(null),
    stateDir: z.string({ error: 'must be a directory path' }).min(1, { error: 'must be a directory path' }).nullable().default(null),
  })
  .superRefine((c, ctx) => {
    if (c.adminTls === null && !isLoopbackHost(c.adminListen.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['adminListen', 'host'],
        message:
          `refusing to serve the admin API in plain HTTP on ${c.adminListen.host}: it is not a loopback address ` +
          '(give adminTls {certFile, keyFile} to serve it over HTTPS, or listen on 127.0.0.1)',
        input: c.adminListen.host,
      });
    }
  });

/** One line per issue: `field message` for "must ..."/"is ..." phrases, else `field: message`. */
function describeIssues(issues: z.core.$ZodIssue[], prefix: PropertyKey[] = []): string {
  return issues
    .map((issue) => {
      const field = [...prefix, ...issue.path]
        .map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i === 0 ? '' : '.'}${String(k)}`))
        .join('');
      if (field === '') return issue.message;
      return /^(must|is) /.test(issue.message) ? `${field} ${issue.message}` : `${field}: ${issue.message}`;
    })
    .join('; ');
}

/**
 * Check upstream entries: unique valid names, http URLs (reduced to their origin), weight 1..1000
 * (default 1), an optional positive maxConnections.
 * @returns the entries as the pool takes them.
 * @throws ProxyConfigError naming the offending entry and field, e.g. `upstreams[1]: duplicate name "a"`.
 */
export function validateUpstreams(upstreams: UpstreamConfig[]): UpstreamConfig[] {
  const r = UpstreamsSchema.safeParse(upstreams);
  if (!r.success) throw new ProxyConfigError(describeIssues(r.error.issues, ['upstreams']));
  return r.data;
}

/**
 * Apply defaults and validate.
 * @returns the configuration with every default applied (times in ms, as in ProxyConfig).
 * @throws ProxyConfigError naming each bad field: a missing or out-of-range value, a short secret, a
 *   bad trusted network, or a non-loopback admin address without `adminTls`.
 */
export function resolveProxyConfig(config: ProxyConfig): ResolvedProxyConfig {
  const r = ProxyConfigSchema.safeParse(config);
  if (!r.success) throw new ProxyConfigError(describeIssues(r.error.issues));
  const accessLog = config.accessLog && config.accessLog.sampleRate > 0 ? { path: config.accessLog.path, sampleRate: Math.min(1, config.accessLog.sampleRate) } : null;
  return { ...r.data, logger: config.logger ?? pino({ level: 'silent' }), accessLog } satisfies ResolvedProxyConfig;
}
