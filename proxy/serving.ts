/**
 * A worker: serves the public listener with its own request path and mirrors the instance set,
 * admin state, health and ejection decided by the primary (see worker-set.ts). It reports its
 * in-flight and held counts, waits for its share of a drain, sends its metrics on request, and
 * asks the primary to eject an instance whose requests fail here.
 *
 * Independent of how it talks to the primary: `worker.ts` runs it in a node:cluster worker
 * (messages over IPC), `worker-set.ts` runs it in the primary's own process (one process mode,
 * messages as plain calls). Either way it is the same code on the same messages.
 */
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { resolveProxyConfig } from './config.ts';
import { waitForDrain, wakeIdleWaiters } from './drain.ts';
import { PassiveEjector } from './ejection.ts';
import { ProxyMetrics } from './metrics.ts';
import { UpstreamPool } from './pool.ts';
import { RequestPath } from './server.ts';
import type { InstanceSnapshot, PrimaryMessage, WorkerConfig, WorkerCounts, WorkerMessage } from './worker-protocol.ts';

/** Where a worker runs: how it answers, and what it does when starting fails or it has stopped. */
export interface WorkerHost {
  send(msg: WorkerMessage): void;
  /** Starting failed (e.g. the port is taken); the worker serves nothing. */
  startFailed(err: Error & { code?: string }): void;
  /** `shutdown` finished: every request answered or cut, every connection closed. */
  stopped(): void;
  /** Logger of the request path (its rare errors); silent when absent. The mirrored pool never logs. */
  logger?: Logger;
  /** Listen with `exclusive: true` (one process: no port sharing with cluster workers). */
  exclusive: boolean;
  /** Push counts to the primary this often, ms, when they changed; null: never (the primary reads `counts()`). */
  reportEveryMs: number | null;
}

/** One worker: a request path over a mirror of the primary's pool (see the module comment). */
export class ServingWorker {
  private path: RequestPath | null = null;
  private pool: UpstreamPool | null = null;
  private metrics: ProxyMetrics | null = null;
  private shutdownGraceMs = 10_000;
  private lastReport = '';
  private reportTimer: NodeJS.Timeout | null = null;

  constructor(private readonly host: WorkerHost) {}

  /** Tell the primary this worker listens for messages (it answers with `start`). */
  announce(): void {
    this.host.send({ t: 'hello' });
  }

  /** Act on one message from the primary. Never throws; answers through `host.send`. */
  handle(msg: PrimaryMessage): void {
    switch (msg.t) {
      case 'start':
        this.start(msg.config, msg.instances).catch((err: Error) => this.host.startFailed(err));
        break;
      case 'state':
        this.applyState(msg.instances);
        break;
      case 'query':
        this.host.send({ t: 'status', id: msg.id, ...this.counts() });
        break;
      case 'drainWait': {
        const u = this.pool?.get(msg.name);
        const path = this.path;
        if (u === undefined || path === null) this.host.send({ t: 'drained', id: msg.id, drained: true, inflight: 0 });
        else
          void waitForDrain(u, msg.timeoutMs, (x) => path.closeStreams(x)).then(({ drained, inflight }) =>
            this.host.send({ t: 'drained', id: msg.id, drained, inflight }),
          );
        break;
      }
      case 'metrics':
        void this.metrics?.registry.getMetricsAsJSON().then((json) => this.host.send({ t: 'metrics', id: msg.id, json }));
        break;
      case 'shutdown':
        void this.shutdown();
        break;
    }
  }

  /** In-flight and held requests of this worker, by instance, now. */
  counts(): WorkerCounts {
    const inflight: Record<string, number> = {};
    const held: Record<string, number> = {};
    for (const u of this.pool?.upstreams ?? []) {
      inflight[u.name] = u.inflight;
      held[u.name] = u.held;
    }
    return { inflight, held };
  }

  private applyState(instances: InstanceSnapshot[]): void {
    const pool = this.pool;
    if (pool === null) return;
    const { retired } = pool.replace(instances);
    for (const u of retired) {
      this.path?.forget(u);
      wakeIdleWaiters(u, u.inflight === 0);
    }
    for (const s of instances) {
      const u = pool.get(s.name);
      if (u === undefined) continue;
      const before = u.servesPinned;
      u.checked = true;
      u.healthy = s.healthy;
      u.ejected = s.ejected;
      u.ejections = s.ejections;
      pool.setState(s.name, s.state, 'primary');
      if (!before && u.servesPinned) pool.onAvailable(u);
    }
  }

  private async start(config: WorkerConfig, instances: InstanceSnapshot[]): Promise<void> {
    const silent = pino({ level: 'silent' });
    const cfg = resolveProxyConfig({ ...config, logger: this.host.logger ?? silent });
    this.shutdownGraceMs = cfg.timeouts.shutdownGraceMs;
    const pool = new UpstreamPool(instances, { cookieName: cfg.affinityCookieName, secret: cfg.affinitySecret, logger: silent, balance: cfg.balance });
    this.pool = pool;
    this.metrics = new ProxyMetrics(pool, { poolGauges: false });
    const ejector = new PassiveEjector(pool, cfg.passiveEjection, async () => false, () => undefined, {
      eject: (u, reason) => this.host.send({ t: 'eject', name: u.name, reason }),
      recovered: (u) => this.host.send({ t: 'recovered', name: u.name }),
    });
    const path = new RequestPath(pool, this.metrics, ejector, cfg);
    this.path = path;
    this.applyState(instances);
    await new Promise<void>((resolve, reject) => {
      path.server.once('error', reject);
      path.server.listen({ host: cfg.listen.host, port: cfg.listen.port, exclusive: this.host.exclusive }, () => {
        path.server.off('error', reject);
        resolve();
      });
    });
    const addr = path.server.address() as AddressInfo;
    this.host.send({ t: 'ready', port: addr.port, address: addr.address, family: addr.family });
    const every = this.host.reportEveryMs;
    // Lets the primary's `instances()` stay close to the truth without a message per request.
    if (every !== null) this.reportTimer = setInterval(() => this.report(), every).unref();
  }

  private report(): void {
    const c = this.counts();
    const text = JSON.stringify(c);
    if (text === this.lastReport) return;
    this.lastReport = text;
    this.host.send({ t: 'report', ...c });
  }

  private async shutdown(): Promise<void> {
    if (this.reportTimer !== null) clearInterval(this.reportTimer);
    await this.path?.close(this.shutdownGraceMs);
    // Drain waits still open get their answer now that nothing more will finish.
    for (const u of this.pool?.upstreams ?? []) wakeIdleWaiters(u, u.inflight === 0);
    this.host.stopped();
  }
}
