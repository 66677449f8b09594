/**
 * The Lockstep proxy, as a library: `startProxy(config)` composes the pool, the health checks,
 * passive ejection, the metrics, the admin API and the workers that serve requests, and returns a
 * handle to inspect and stop it.
 *
 * One setup path for both modes: the primary logic here is the same whether its workers are one
 * `ServingWorker` in this process (default) or node:cluster processes (`workers > 1`); see
 * worker-set.ts for who owns what.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createAdminServer, type AdminServer } from './admin.ts';
import { forkWorkers } from './cluster.ts';
import { ProxyConfigError, resolveProxyConfig, validateUpstreams, type AdminTlsConfig, type ProxyConfig, type UpstreamConfig } from './config.ts';
import { AdminStateError, readAdminState, writeAdminState, type AdminControl } from './control.ts';
import { drainInstance, setInstanceState } from './drain.ts';
import { PassiveEjector } from './ejection.ts';
import { HealthChecker, checkOnce } from './health.ts';
import { ProxyMetrics, aggregateMetrics } from './metrics.ts';
import { UpstreamPool } from './pool.ts';
import type { InstanceState, UpstreamStatus } from './upstream.ts';
import { WorkerSet, startInProcessWorker } from './worker-set.ts';

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
  AdminTlsConfig,
} from './config.ts';
export { ProxyConfigError } from './config.ts';
export type { InstanceState, UpstreamStatus } from './upstream.ts';

/** A started proxy. */
export interface RunningProxy {
  /** Where users connect, with the port actually bound, e.g. `http://127.0.0.1:40123`. */
  readonly url: string;
  /** Base URL of the admin API. */
  readonly adminUrl: string;
  /**
   * Snapshot of every instance (same data as `GET /admin/instances`). In worker mode in-flight and
   * held are as last reported by the workers (every 200 ms); the admin API asks them live.
   */
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

function listen(server: AdminServer, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

function urlOf(addr: { address: string; family: string; port: number }, scheme = 'http'): string {
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return `${scheme}://${host}:${addr.port}`;
}

/**
 * Read the admin certificate and key.
 * @throws ProxyConfigError naming the field and file when one cannot be read.
 */
function readTls(tls: AdminTlsConfig): { cert: Buffer; key: Buffer } {
  const read = (file: string, field: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new ProxyConfigError(`adminTls.${field}: cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  };
  return { cert: read(tls.certFile, 'certFile'), key: read(tls.keyFile, 'keyFile') };
}

/**
 * Start the proxy: check every instance once (so instances that are up get traffic at once), start
 * the workers (they listen on `listen`), listen on `adminListen`, and keep checking.
 * @param config see ProxyConfig; ports may be 0 (worker mode: all workers share the one chosen).
 * @param options.workers run this many worker processes sharing the port (worker mode, see
 *   cluster.ts); default 1: everything in this process.
 * @param options.reloadSource called by `POST /admin/reload` (and by the CLI on SIGHUP) to get a fresh
 *   upstream list; without it the admin reload route answers 501.
 * @returns the running proxy, with the bound URLs.
 * @throws ProxyConfigError for an invalid config; the listen error (e.g. EADDRINUSE) when a port is
 *   taken (in worker mode an Error "proxy worker could not start: ..." carrying its `code`).
 */
export async function startProxy(
  config: ProxyConfig,
  options: { reloadSource?: () => Promise<UpstreamConfig[]> | UpstreamConfig[]; workers?: number } = {},
): Promise<RunningProxy> {
  const cfg = resolveProxyConfig(config);
  const logger = cfg.logger;
  const workerMode = options.workers !== undefined && options.workers > 1;
  const { logger: _notSerialisable, ...workerConfig } = config;
  const tls = cfg.adminTls ? readTls(cfg.adminTls) : undefined;
  const pool = new UpstreamPool(cfg.upstreams, { cookieName: cfg.affinityCookieName, secret: cfg.affinitySecret, logger, balance: cfg.balance });
  // Drain and disable decisions outlive the process (control.ts): restore them before any worker
  // starts, so no request reaches an instance the operator took out.
  const stateDir = cfg.stateDir;
  if (stateDir !== null) {
    let saved;
    try {
      saved = readAdminState(stateDir);
    } catch (e) {
      if (e instanceof AdminStateError) throw new ProxyConfigError(`stateDir: ${e.message}`);
      throw e;
    }
    for (const [name, state] of saved) {
      if (pool.setState(name, state, 'restored from the state file') === undefined) logger.warn({ instance: name, state }, 'state file names an instance the proxy does not have; ignored');
    }
  }
  /** Write the states as they will be after `change` (before applying it), so a failed write changes nothing. */
  const persist = (change?: { name: string; state: InstanceState }): void => {
    if (stateDir === null) return;
    writeAdminState(stateDir, pool.status().map((s) => (s.name === change?.name ? { name: s.name, state: change.state } : s)));
  };
  const metrics = new ProxyMetrics(pool);
  const ejector = new PassiveEjector(
    pool,
    cfg.passiveEjection,
    async (u) => (await checkOnce(new URL(cfg.healthPath, u.target), cfg.healthCheck.timeoutMs)).ok,
    (u) => {
      metrics.ejection(u.name);
      workers.broadcast();
    },
  );
  const workers = new WorkerSet(pool, workerConfig, ejector);
  const health = new HealthChecker(pool, cfg.healthPath, cfg.healthCheck, (u) => {
    if (!u.healthy) metrics.ejection(u.name);
    else ejector.healthRecovered(u);
    workers.broadcast();
  });
  // Back from ejection, enabled, healthy again: workers must know (they release held requests).
  pool.onAvailable = () => workers.broadcast();

  const reload = async (upstreams: UpstreamConfig[]): Promise<{ added: string[]; removed: string[] }> => {
    const { added, removed } = pool.replace(validateUpstreams(upstreams));
    // Removed instances leave the file; a failed write is logged (the reload itself happened).
    try {
      persist();
    } catch (err) {
      logger.error({ err }, 'could not write the proxy admin state after a reload');
    }
    health.sync();
    workers.broadcast();
    return { added, removed };
  };
  const reloadSource = options.reloadSource;
  const control: AdminControl = {
    instances: () => workers.liveInstances(),
    setState: (name, state) => {
      if (pool.get(name)) persist({ name, state });
      return setInstanceState(pool, workers, name, state);
    },
    drain: (name, waitMs) => {
      if (pool.get(name)) persist({ name, state: 'draining' });
      return drainInstance(pool, workers, name, waitMs);
    },
    metrics: async () => aggregateMetrics([await metrics.registry.getMetricsAsJSON(), ...(await workers.metricsJson())]),
    reload: reloadSource ? async () => reload(await reloadSource()) : undefined,
  };
  let admin: AdminServer;
  try {
    admin = createAdminServer({ control, token: cfg.adminToken, logger, versionPath: cfg.versionPath, tls });
  } catch (e) {
    // node:tls rejects a certificate or key it cannot parse, or a key that does not match.
    throw new ProxyConfigError(`adminTls: the certificate or key cannot be used (${(e as Error).message}); check certFile and keyFile`);
  }

  await health.checkAll();
  let adminAddr: AddressInfo;
  try {
    if (workerMode) await forkWorkers(workers, options.workers!, logger);
    else await startInProcessWorker(workers, logger);
    adminAddr = await listen(admin, cfg.adminListen.host, cfg.adminListen.port);
  } catch (err) {
    await workers.stop();
    admin.close();
    throw err;
  }
  health.start();
  const url = urlOf(workers.bound ?? { address: cfg.listen.host, family: 'IPv4', port: cfg.listen.port });
  const adminUrl = urlOf(adminAddr, tls ? 'https' : 'http');
  logger.info({ url, adminUrl, workers: workerMode ? workers.size : 0, instances: pool.status() }, workerMode ? 'proxy started (worker mode)' : 'proxy started');

  let closing: Promise<void> | null = null;
  return {
    url,
    adminUrl,
    instances: () => workers.knownInstances(),
    ...(workerMode ? { workerPids: () => workers.pids() } : {}),
    reload,
    close() {
      closing ??= (async () => {
        logger.info('proxy stopping');
        health.stop();
        ejector.stop();
        const adminClosed = new Promise<void>((resolve) => admin.close(() => resolve()));
        admin.closeIdleConnections();
        // Workers let their requests finish; a drain waiting on the admin API gets its answer.
        await workers.stop();
        admin.closeAllConnections();
        await adminClosed;
        logger.info('proxy stopped');
      })();
      return closing;
    },
  };
}
