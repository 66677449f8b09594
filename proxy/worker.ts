/**
 * A cluster worker (see cluster.ts): serves the public listener with its own request path, and
 * mirrors the instance set, admin state, health and ejection decided by the primary. It reports
 * its in-flight and held counts, waits for its share of a drain, sends its metrics on request,
 * and asks the primary to eject an instance whose requests fail here.
 *
 * Entry point of `cluster.fork()`; not imported by anything else.
 */
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { STREAM_CLOSE_GRACE_MS, resolveProxyConfig } from './config.ts';
import { PassiveEjector } from './ejection.ts';
import { ProxyMetrics } from './metrics.ts';
import { UpstreamPool } from './pool.ts';
import { RequestPath } from './server.ts';
import type { InstanceSnapshot, PrimaryMessage, WorkerConfig, WorkerMessage } from './cluster-protocol.ts';

function send(msg: WorkerMessage): void {
  process.send?.(msg);
}

let path: RequestPath | null = null;
let pool: UpstreamPool | null = null;
let metrics: ProxyMetrics | null = null;
let shutdownGraceMs = 10_000;
let lastReport = '';

function applyState(instances: InstanceSnapshot[]): void {
  if (pool === null) return;
  const { retired } = pool.replace(instances);
  for (const u of retired) path?.forget(u);
  for (const s of instances) {
    const u = pool.get(s.name);
    if (u === undefined) continue;
    const before = u.servesPinned;
    u.checked = true;
    u.healthy = s.healthy;
    u.ejected = s.ejected;
    pool.setState(s.name, s.state, 'primary');
    if (!before && u.servesPinned) pool.onAvailable(u);
  }
}

function counts(): { inflight: Record<string, number>; held: Record<string, number> } {
  const inflight: Record<string, number> = {};
  const held: Record<string, number> = {};
  for (const u of pool?.upstreams ?? []) {
    inflight[u.name] = u.inflight;
    held[u.name] = u.held;
  }
  return { inflight, held };
}

async function start(config: WorkerConfig, instances: InstanceSnapshot[]): Promise<void> {
  const logger = pino({ level: 'silent' });
  const cfg = resolveProxyConfig({ ...config, logger });
  shutdownGraceMs = cfg.timeouts.shutdownGraceMs;
  pool = new UpstreamPool(instances, { cookieName: cfg.affinityCookieName, secret: cfg.affinitySecret, logger, balance: cfg.balance });
  metrics = new ProxyMetrics(pool, { poolGauges: false });
  const ejector = new PassiveEjector(
    pool,
    cfg.passiveEjection,
    async () => false,
    () => undefined,
    (u, reason) => send({ t: 'eject', name: u.name, reason }),
  );
  path = new RequestPath(pool, metrics, ejector, cfg);
  applyState(instances);
  await new Promise<void>((resolve, reject) => {
    path!.server.once('error', reject);
    path!.server.listen({ host: cfg.listen.host, port: cfg.listen.port }, () => resolve());
  });
  const addr = path.server.address() as AddressInfo;
  send({ t: 'ready', port: addr.port, address: addr.address, family: addr.family });
  // Let the primary's `instances()` stay close to the truth without a message per request.
  setInterval(() => {
    const c = counts();
    const text = JSON.stringify(c);
    if (text !== lastReport) {
      lastReport = text;
      send({ t: 'report', ...c });
    }
  }, 200).unref();
}

process.on('message', (msg: PrimaryMessage) => {
  switch (msg.t) {
    case 'start':
      start(msg.config, msg.instances).catch((err: Error) => {
        send({ t: 'failed', message: err.message, code: (err as NodeJS.ErrnoException).code });
        process.exit(1);
      });
      break;
    case 'state':
      applyState(msg.instances);
      break;
    case 'query':
      send({ t: 'status', id: msg.id, ...counts() });
      break;
    case 'drainWait': {
      const u = pool?.get(msg.name);
      if (u === undefined) send({ t: 'drained', id: msg.id, drained: true, inflight: 0 });
      else
        void (async () => {
          let drained = await u.waitUntilIdle(msg.timeoutMs);
          if (!drained && path !== null && path.closeStreams(u) > 0) drained = await u.waitUntilIdle(STREAM_CLOSE_GRACE_MS);
          send({ t: 'drained', id: msg.id, drained, inflight: u.inflight });
        })();
      break;
    }
    case 'metrics':
      void metrics?.registry.getMetricsAsJSON().then((json) => send({ t: 'metrics', id: msg.id, json }));
      break;
    case 'shutdown':
      void (async () => {
        await path?.close(shutdownGraceMs);
        process.exit(0);
      })();
      break;
  }
});

// Messages sent before a listener exists would be lost: the primary sends `start` on this.
send({ t: 'hello' });

// The primary going away (crash, kill -9) must not leave an orphan serving stale state.
process.on('disconnect', () => process.exit(0));
