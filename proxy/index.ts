/**
 * The Lockstep proxy, as a library: `startProxy(config)` composes the pool, the health checks, the
 * request path, the metrics and the admin API, and returns a handle to inspect and stop it.
 */
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminServer, type AdminControl } from './admin.ts';
import { startProxyCluster } from './cluster.ts';
import { STREAM_CLOSE_GRACE_MS, resolveProxyConfig, validateUpstreams, type ProxyConfig, type UpstreamConfig } from './config.ts';
import { PassiveEjector } from './ejection.ts';
import { HealthChecker, checkOnce } from './health.ts';
import { ProxyMetrics } from './metrics.ts';
import { UpstreamPool } from './pool.ts';
import { RequestPath } from './server.ts';
import type { UpstreamStatus } from './upstream.ts';

export type {
  ProxyConfig,
  UpstreamConfig,
  HealthCheckConfig,
  ProxyTimeouts,
  ListenAddress,
  BalanceAlgorithm,
  PassiveEjectionConfig,
  RetryConfig,
  HoldConfig,
  ProxyEngine,
} from './config.ts';
export { ProxyConfigError } from './config.ts';
export type { InstanceState, UpstreamStatus } from './upstream.ts';

/** A started proxy. */
export interface RunningProxy {
  /** Where users connect, with the port actually bound, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  /** Base URL of the admin API. */
  readonly adminUrl: string;
  /** Snapshot of every instance (same data as `GET /admin/instances`). */
  instances(): UpstreamStatus[];
  /** Worker mode only: pids of the worker processes that are listening (for operators and tests). */
  workerPids?: () => number[];
  /**
   * Replace the upstream set without dropping connections: unchanged instances keep their state and
   * in-flight requests; new ones are health-checked before they get traffic.
   * @throws ProxyConfigError for an invalid list (nothing changes).
   */
  reload(upstreams: UpstreamConfig[]): Promise<{ added: string[]; removed: string[] }>;
  /**
   * Graceful stop: stop accepting, let in-flight requests finish (up to `timeouts.shutdownGraceMs`),
   * then close every socket and stop the health checks. Idempotent.
   */
  close(): Promise<void>;
}

function listen(server: http.Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

function urlOf(addr: AddressInfo): string {
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `http://${host}:${addr.port}`;
}

/**
 * Start the proxy: check every instance once (so instances that are up get traffic at once), then
 * listen on `listen` and `adminListen` and keep checking.
 * @param config see ProxyConfig; ports may be 0.
 * @param options.workers run this many worker processes sharing the port (worker mode, see
 *   cluster.ts); default 1: everything in this process.
 * @param options.reloadSource called by `POST /admin/reload` (and by the CLI on SIGHUP) to get a fresh
 *   upstream list; without it the admin reload route answers 501.
 * @returns the running proxy, with the bound URLs.
 * @throws ProxyConfigError for an invalid config; the listen error (e.g. EADDRINUSE) when a port is taken.
 */
export async function startProxy(
  config: ProxyConfig,
  options: { reloadSource?: () => Promise<UpstreamConfig[]> | UpstreamConfig[]; workers?: number } = {},
): Promise<RunningProxy> {
  if (options.workers !== undefined && options.workers > 1) {
    return startProxyCluster(config, { workers: options.workers, reloadSource: options.reloadSource });
  }
  const cfg = resolveProxyConfig(config);
  const logger = cfg.logger;
  const pool = new UpstreamPool(cfg.upstreams, {
    cookieName: cfg.affinityCookieName,
    secret: cfg.affinitySecret,
    logger,
    balance: cfg.balance,
  });
  const metrics = new ProxyMetrics(pool);
  const health = new HealthChecker(pool, cfg.healthPath, cfg.healthCheck, (u) => {
    if (!u.healthy) metrics.ejection(u.name);
  });
  const ejector = new PassiveEjector(
    pool,
    cfg.passiveEjection,
    async (u) => (await checkOnce(new URL(cfg.healthPath, u.target), cfg.healthCheck.timeoutMs)).ok,
    (u) => metrics.ejection(u.name),
  );
  const path = new RequestPath(pool, metrics, ejector, cfg);

  const reload = async (upstreams: UpstreamConfig[]): Promise<{ added: string[]; removed: string[] }> => {
    const { added, removed, retired } = pool.replace(validateUpstreams(upstreams));
    for (const u of retired) path.forget(u);
    health.sync();
    return { added, removed };
  };
  const reloadSource = options.reloadSource;
  const control: AdminControl = {
    instances: async () => pool.status(),
    setState: async (name, state) => pool.setState(name, state)?.status(),
    drain: async (name, waitMs) => {
      const u = pool.setState(name, 'draining');
      if (!u) return undefined;
      let drained = waitMs === null ? u.inflight === 0 : await u.waitUntilIdle(waitMs);
      // At the deadline, long-lived streams (SSE, WebSockets) are closed cleanly: they would never end
      // by themselves. Other requests are left to finish or to be cut by the restart.
      if (!drained && waitMs !== null && path.closeStreams(u) > 0) drained = await u.waitUntilIdle(STREAM_CLOSE_GRACE_MS);
      return { drained, inflight: u.inflight, state: u.state };
    },
    metrics: async () => ({ contentType: metrics.registry.contentType, text: await metrics.registry.metrics() }),
    reload: reloadSource ? async () => reload(await reloadSource()) : undefined,
  };
  const admin = createAdminServer({ control, token: cfg.adminToken, logger, versionPath: cfg.versionPath });

  await health.checkAll();
  let publicAddr: AddressInfo;
  let adminAddr: AddressInfo;
  try {
    publicAddr = await listen(path.server, cfg.listen.host, cfg.listen.port);
    adminAddr = await listen(admin, cfg.adminListen.host, cfg.adminListen.port);
  } catch (err) {
    admin.close();
    await path.close(0);
    throw err;
  }
  health.start();
  const url = urlOf(publicAddr);
  const adminUrl = urlOf(adminAddr);
  logger.info({ url, adminUrl, instances: pool.status() }, 'proxy started');

  let closing: Promise<void> | null = null;
  return {
    url,
    adminUrl,
    instances: () => pool.status(),
    reload,
    close() {
      closing ??= (async () => {
        logger.info({ inflight: path.activeRequests }, 'proxy stopping');
        health.stop();
        ejector.stop();
        const adminClosed = new Promise<void>((resolve) => admin.close(() => resolve()));
        admin.closeIdleConnections();
        await path.close(cfg.timeouts.shutdownGraceMs);
        for (const u of pool.upstreams) u.wakeIdleWaiters(u.inflight === 0);
        admin.closeAllConnections();
        await adminClosed;
        logger.info('proxy stopped');
      })();
      return closing;
    },
  };
}
