/**
 * Worker mode: N node:cluster workers share the public port (the primary accepts connections and
 * hands them out round robin), each running its own request path; the primary runs no request
 * path. State has one owner so drain, health and stickiness stay consistent across workers:
 *
 * - the primary owns the instance set, admin state, health checks and passive ejection, and pushes
 *   every change to every worker, in order, before it answers the admin call that caused it;
 * - a worker owns its requests: its in-flight and held counts, its share of a drain
 *   (`drain?wait=1` completes when every worker's share has), its metrics (summed on scrape);
 * - a worker that sees an instance fail repeatedly asks the primary to eject it;
 * - stickiness needs no coordination: the affinity cookie is a pure function of the secret and
 *   the instance name, so every worker reads and writes the same cookie.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { createAdminServer, type AdminControl } from './admin.ts';
import type { InstanceSnapshot, PrimaryMessage, WorkerConfig, WorkerMessage } from './cluster-protocol.ts';
import { resolveProxyConfig, validateUpstreams, type ProxyConfig, type UpstreamConfig } from './config.ts';
import { PassiveEjector } from './ejection.ts';
import { HealthChecker, checkOnce } from './health.ts';
import { ProxyMetrics } from './metrics.ts';
import { UpstreamPool } from './pool.ts';
import type { UpstreamStatus } from './upstream.ts';
import type { RunningProxy } from './index.ts';
import { workerEntry } from './worker-entry.ts';

/** How long the primary waits for a worker's answer to a query, ms (workers answer at once). */
const QUERY_TIMEOUT_MS = 2_000;

interface Pending {
  resolve: (msg: WorkerMessage) => void;
  timer: NodeJS.Timeout;
}

/**
 * Start the proxy in worker mode (see the module comment).
 * @param config as for startProxy; `listen.port` 0 gives all workers the same free port.
 * @param options.workers number of worker processes (>= 1).
 * @param options.reloadSource as for startProxy.
 * @returns the running proxy. `instances()` reports in-flight/held as last reported by the workers
 *   (every 200 ms); the admin API queries them live.
 * @throws ProxyConfigError for an invalid config; an Error naming the cause when a worker cannot listen.
 */
export async function startProxyCluster(
  config: ProxyConfig,
  options: { workers: number; reloadSource?: () => Promise<UpstreamConfig[]> | UpstreamConfig[] },
): Promise<RunningProxy> {
  const cfg = resolveProxyConfig(config);
  const logger = cfg.logger;
  const { logger: _omit, ...workerConfig } = config;
  const wconfig: WorkerConfig = workerConfig;
  const pool = new UpstreamPool(cfg.upstreams, { cookieName: cfg.affinityCookieName, secret: cfg.affinitySecret, logger, balance: cfg.balance });
  const metrics = new ProxyMetrics(pool);
  const workers = new Set<Worker>();
  /** Workers that listen (said `ready`). */
  const ready = new Set<Worker>();
  const reports = new Map<Worker, { inflight: Record<string, number>; held: Record<string, number> }>();
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closing = false;
  let restartsInARow = 0;

  const snapshot = (): InstanceSnapshot[] =>
    pool.upstreams.map((u) => ({
      name: u.name,
      url: u.url,
      weight: u.weight,
      ...(Number.isFinite(u.maxConnections) ? { maxConnections: u.maxConnections } : {}),
      state: u.state,
      healthy: u.healthy,
      ejected: u.ejected,
    }));
  const sendTo = (w: Worker, msg: PrimaryMessage): void => {
    if (w.isConnected()) w.send(msg);
  };
  const broadcast = (): void => {
    const msg: PrimaryMessage = { t: 'state', instances: snapshot() };
    for (const w of workers) sendTo(w, msg);
  };
  /** Ask every worker; resolves with the answers that came back in time. */
  const ask = (make: (id: number) => PrimaryMessage, timeoutMs = QUERY_TIMEOUT_MS): Promise<WorkerMessage[]> =>
    Promise.all(
      [...workers].filter((w) => w.isConnected()).map(
        (w) =>
          new Promise<WorkerMessage | null>((resolve) => {
            const id = nextId++;
            const timer = setTimeout(() => {
              pending.delete(id);
              resolve(null);
            }, timeoutMs);
            pending.set(id, { resolve, timer });
            sendTo(w, make(id));
          }),
      ),
    ).then((all) => all.filter((m): m is WorkerMessage => m !== null));

  const health = new HealthChecker(pool, cfg.healthPath, cfg.healthCheck, (u) => {
    if (!u.healthy) metrics.ejection(u.name);
    broadcast();
  });
  const ejector = new PassiveEjector(
    pool,
    cfg.passiveEjection,
    async (u) => (await checkOnce(new URL(cfg.healthPath, u.target), cfg.healthCheck.timeoutMs)).ok,
    (u) => {
      metrics.ejection(u.name);
      broadcast();
    },
  );
  // Back from ejection, enabled, healthy again: workers must know (they release held requests).
  pool.onAvailable = () => broadcast();

  const withCounts = (statuses: UpstreamStatus[], answers: Iterable<{ inflight: Record<string, number>; held: Record<string, number> }>): UpstreamStatus[] => {
    const list = [...answers];
    return statuses.map((s) => ({
      ...s,
      inflight: list.reduce((n, a) => n + (a.inflight[s.name] ?? 0), 0),
      held: list.reduce((n, a) => n + (a.held[s.name] ?? 0), 0),
    }));
  };
  const liveInstances = async (): Promise<UpstreamStatus[]> => {
    const answers = (await ask((id) => ({ t: 'query', id }))).filter((m) => m.t === 'status');
    return withCounts(pool.status(), answers);
  };

  const reload = async (upstreams: UpstreamConfig[]): Promise<{ added: string[]; removed: string[] }> => {
    const { added, removed } = pool.replace(validateUpstreams(upstreams));
    health.sync();
    broadcast();
    return { added, removed };
  };
  const reloadSource = options.reloadSource;

  const control: AdminControl = {
    instances: liveInstances,
    setState: async (name, state) => {
      if (!pool.setState(name, state)) return undefined;
      broadcast();
      return (await liveInstances()).find((s) => s.name === name);
    },
    drain: async (name, waitMs) => {
      const u = pool.setState(name, 'draining');
      if (!u) return undefined;
      // IPC is ordered: every worker applies "draining" before it sees the wait below.
      broadcast();
      if (waitMs === null) {
        const inflight = (await liveInstances()).find((s) => s.name === name)?.inflight ?? 0;
        return { drained: inflight === 0, inflight, state: u.state };
      }
      const answers = await ask((id) => ({ t: 'drainWait', id, name, timeoutMs: waitMs }), waitMs + QUERY_TIMEOUT_MS);
      let drained = answers.length === workers.size;
      let inflight = 0;
      for (const a of answers) {
        if (a.t !== 'drained') continue;
        drained &&= a.drained;
        inflight += a.inflight;
      }
      return { drained: drained && inflight === 0, inflight, state: u.state };
    },
    metrics: async () => {
      const answers = await ask((id) => ({ t: 'metrics', id }));
      const jsons: Array<Array<MetricObjectWithValues<MetricValue<string>>>> = [await metrics.registry.getMetricsAsJSON()];
      for (const a of answers) if (a.t === 'metrics') jsons.push(a.json);
      const merged = AggregatorRegistry.aggregate(jsons);
      // The ratio cannot be summed: recompute it from the summed counters.
      const uploads = jsons.flat().filter((m) => m.name === 'lockstep_proxy_uploads_total').flatMap((m) => m.values);
      const ok = uploads.filter((v) => v.labels.outcome === 'success').reduce((n, v) => n + v.value, 0);
      const total = uploads.reduce((n, v) => n + v.value, 0);
      const ratio =
        '# HELP lockstep_proxy_upload_success_ratio Share of uploads answered 2xx since start (1 when there were none)\n' +
        `# TYPE lockstep_proxy_upload_success_ratio gauge\nlockstep_proxy_upload_success_ratio ${total === 0 ? 1 : ok / total}\n`;
      return { contentType: merged.contentType, text: (await merged.metrics()) + ratio };
    },
    reload: reloadSource ? async () => reload(await reloadSource()) : undefined,
  };

  let boundPort = cfg.listen.port;
  let boundAddr: { address: string; family: string } | null = null;
  cluster.setupPrimary({ ...workerEntry(), args: [] });

  const fork = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork();
      workers.add(w);
      w.on('message', (msg: WorkerMessage) => {
        switch (msg.t) {
          case 'hello':
            // A worker that finished booting after close() began gets told to stop, not to start
            // (a message sent before its listener existed would have been lost).
            if (closing) {
              sendTo(w, { t: 'shutdown' });
              break;
            }
            // Every worker listens with the configured address, port 0 included: node:cluster keys the
            // shared listener by those arguments, so all workers get the same (random) port.
            sendTo(w, { t: 'start', config: wconfig, instances: snapshot() });
            break;
          case 'ready':
            ready.add(w);
            boundPort = msg.port;
            boundAddr = { address: msg.address, family: msg.family };
            resolve();
            break;
          case 'failed':
            reject(Object.assign(new Error(`proxy worker could not start: ${msg.message}`), { code: msg.code }));
            break;
          case 'report':
            reports.set(w, { inflight: msg.inflight, held: msg.held });
            break;
          case 'eject': {
            const u = pool.get(msg.name);
            if (u) ejector.ejectNow(u, `${msg.reason} (worker ${w.id})`);
            break;
          }
          default: {
            const p = pending.get(msg.id);
            if (p) {
              pending.delete(msg.id);
              clearTimeout(p.timer);
              p.resolve(msg);
            }
          }
        }
      });
      w.on('error', () => undefined);
      w.once('exit', (code, signal) => {
        workers.delete(w);
        ready.delete(w);
        reports.delete(w);
        if (!closing) {
          // A worker that keeps dying must not become a fork loop: wait, longer each time in a row.
          const delayMs = Math.min(100 * 2 ** restartsInARow, 10_000);
          restartsInARow++;
          logger.error({ worker: w.id, code, signal, restartInMs: delayMs }, 'proxy worker died; starting a new one');
          setTimeout(() => {
            if (closing) return;
            fork().then(
              () => (restartsInARow = 0),
              (err: unknown) => logger.error({ err }, 'could not restart a proxy worker'),
            );
          }, delayMs).unref();
        }
        reject(new Error(`proxy worker exited (${signal ?? code}) before it was ready`));
      });
    });

  await health.checkAll();
  const admin = createAdminServer({ control, token: cfg.adminToken, logger, versionPath: cfg.versionPath });
  const stopWorkers = async (): Promise<void> => {
    closing = true;
    const exits = [...workers].map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of workers) sendTo(w, { t: 'shutdown' });
    await Promise.all(exits);
  };
  try {
    await fork();
    await Promise.all(Array.from({ length: Math.max(1, options.workers) - 1 }, () => fork()));
    await new Promise<void>((resolve, reject) => {
      admin.once('error', reject);
      admin.listen({ host: cfg.adminListen.host, port: cfg.adminListen.port }, () => resolve());
    });
  } catch (err) {
    await stopWorkers();
    admin.close();
    throw err;
  }
  health.start();
  const addr = admin.address() as import('node:net').AddressInfo;
  const host = (a: { address: string; family: string }): string => (a.family === 'IPv6' ? `[${a.address}]` : a.address);
  const url = `http://${host(boundAddr ?? { address: cfg.listen.host, family: 'IPv4' })}:${boundPort}`;
  const adminUrl = `http://${host(addr)}:${addr.port}`;
  logger.info({ url, adminUrl, workers: workers.size, instances: pool.status() }, 'proxy started (worker mode)');

  let closed: Promise<void> | null = null;
  return {
    url,
    adminUrl,
    instances: () => withCounts(pool.status(), reports.values()),
    workerPids: () => [...ready].map((w) => w.process.pid).filter((pid): pid is number => pid !== undefined),
    reload,
    close() {
      closed ??= (async () => {
        logger.info('proxy stopping (worker mode)');
        health.stop();
        ejector.stop();
        const adminClosed = new Promise<void>((resolve) => admin.close(() => resolve()));
        admin.closeAllConnections();
        await stopWorkers();
        for (const p of pending.values()) clearTimeout(p.timer);
        await adminClosed;
        logger.info('proxy stopped');
      })();
      return closed;
    },
  };
}
