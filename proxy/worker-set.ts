/**
 * The primary's side of its workers. The primary runs no request path: it owns the instance set,
 * admin state, health checks and passive ejection, and pushes every change to every worker, in
 * order, before it answers the admin call that caused it. Workers own their requests (in-flight,
 * held, their share of a drain, their metrics). Stickiness needs no coordination: the affinity
 * cookie is a pure function of the secret and the instance name.
 *
 * One process and worker mode are the same code: in one process the single worker is a
 * `ServingWorker` in this process (`startInProcessWorker`, messages as plain calls); in worker mode
 * they are node:cluster processes (`cluster.ts`, messages over IPC).
 */
import type { Logger } from 'pino';
import type { DrainWorkers } from './drain.ts';
import type { PassiveEjector } from './ejection.ts';
import type { UpstreamPool } from './pool.ts';
import { ServingWorker } from './serving.ts';
import type { UpstreamStatus } from './upstream.ts';
import type { InstanceSnapshot, PrimaryMessage, WorkerConfig, WorkerCounts, WorkerMessage } from './worker-protocol.ts';

/** How long the primary waits for a worker's answer to a query, ms (workers answer at once). */
const QUERY_TIMEOUT_MS = 2_000;

/** The primary's end of one worker. */
export interface WorkerChannel {
  /** How logs name it, e.g. `worker 2`. */
  readonly label: string;
  /** Process id, when the worker is a process of its own. */
  readonly pid: number | undefined;
  /** False once the worker cannot receive messages any more. */
  isConnected(): boolean;
  send(msg: PrimaryMessage): void;
  /** Counts as known now: live in process; for a forked worker, its last report (every 200 ms). */
  counts(): WorkerCounts | undefined;
  /** Resolves once the worker has stopped (exited). */
  exited(): Promise<void>;
}

/** What `attach` gives back: where the channel delivers the worker's messages and its end. */
export interface Attached {
  /** Resolves when the worker listens; rejects when it failed or ended before. */
  ready: Promise<void>;
  receive(msg: WorkerMessage): void;
  /** The worker ended; `reason` names how (exit code or signal). */
  ended(reason: string): void;
}

interface Pending {
  resolve: (msg: WorkerMessage | null) => void;
  timer: NodeJS.Timeout;
}

/** The primary's workers: state pushes, queries, and the counts they report (see the module comment). */
export class WorkerSet implements DrainWorkers {
  private readonly channels = new Set<WorkerChannel>();
  /** Workers that listen (said `ready`). */
  private readonly listening = new Set<WorkerChannel>();
  private readonly reports = new Map<WorkerChannel, WorkerCounts>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stopping = false;
  /** The public address the workers listen on, once one is ready. */
  bound: { port: number; address: string; family: string } | null = null;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly config: WorkerConfig,
    private readonly ejector: PassiveEjector,
  ) {}

  /** True once `stop` began: a worker that ends now is not replaced. */
  get closing(): boolean {
    return this.stopping;
  }

  /** Number of workers (started or starting). */
  get size(): number {
    return this.channels.size;
  }

  private snapshot(): InstanceSnapshot[] {
    return this.pool.upstreams.map((u) => ({
      name: u.name,
      url: u.url,
      weight: u.weight,
      ...(Number.isFinite(u.maxConnections) ? { maxConnections: u.maxConnections } : {}),
      state: u.state,
      healthy: u.healthy,
      ejected: u.ejected,
      ejections: u.ejections,
    }));
  }

  private sendTo(ch: WorkerChannel, msg: PrimaryMessage): void {
    if (ch.isConnected()) ch.send(msg);
  }

  /** Push the instance set and every state to every worker. */
  broadcast(): void {
    const msg: PrimaryMessage = { t: 'state', instances: this.snapshot() };
    for (const ch of this.channels) this.sendTo(ch, msg);
  }

  /** Ask every worker; resolves with the answers that came back within `timeoutMs`. */
  private ask(make: (id: number) => PrimaryMessage, timeoutMs = QUERY_TIMEOUT_MS): Promise<WorkerMessage[]> {
    const asked = [...this.channels].filter((ch) => ch.isConnected());
    return Promise.all(
      asked.map(
        (ch) =>
          new Promise<WorkerMessage | null>((resolve) => {
            const id = this.nextId++;
            const timer = setTimeout(() => {
              this.pending.delete(id);
              resolve(null);
            }, timeoutMs);
            this.pending.set(id, { resolve, timer });
            this.sendTo(ch, make(id));
          }),
      ),
    ).then((all) => all.filter((m): m is WorkerMessage => m !== null));
  }

  private withCounts(answers: Iterable<WorkerCounts>): UpstreamStatus[] {
    const list = [...answers];
    return this.pool.status().map((s) => ({
      ...s,
      inflight: list.reduce((n, a) => n + (a.inflight[s.name] ?? 0), 0),
      held: list.reduce((n, a) => n + (a.held[s.name] ?? 0), 0),
    }));
  }

  /** Every instance's status with the counts as known now (see WorkerChannel.counts). Synchronous. */
  knownInstances(): UpstreamStatus[] {
    const counts: WorkerCounts[] = [];
    for (const ch of this.channels) {
      const c = ch.counts() ?? this.reports.get(ch);
      if (c !== undefined) counts.push(c);
    }
    return this.withCounts(counts);
  }

  /** Every instance's status with in-flight and held summed over the workers, asked live. */
  async liveInstances(): Promise<UpstreamStatus[]> {
    const answers = (await this.ask((id) => ({ t: 'query', id }))).filter((m) => m.t === 'status');
    return this.withCounts(answers);
  }

  /**
   * Every worker's share of a drain of `name`.
   * @param waitMs each worker's bound, ms (answers are awaited up to `waitMs` + 2 s).
   * @returns drained: every worker answered and drained; inflight: the sum left.
   */
  async drainWait(name: string, waitMs: number): Promise<{ drained: boolean; inflight: number }> {
    const expected = this.channels.size;
    const answers = await this.ask((id) => ({ t: 'drainWait', id, name, timeoutMs: waitMs }), waitMs + QUERY_TIMEOUT_MS);
    let drained = answers.length === expected;
    let inflight = 0;
    for (const a of answers) {
      if (a.t !== 'drained') continue;
      drained &&= a.drained;
      inflight += a.inflight;
    }
    return { drained, inflight };
  }

  /** Every worker's metrics (prom-client JSON), for aggregation with the primary's. */
  async metricsJson(): Promise<Array<Extract<WorkerMessage, { t: 'metrics' }>['json']>> {
    return (await this.ask((id) => ({ t: 'metrics', id }))).flatMap((m) => (m.t === 'metrics' ? [m.json] : []));
  }

  /** Pids of the worker processes that listen (worker mode; empty in one process). */
  pids(): number[] {
    return [...this.listening].map((ch) => ch.pid).filter((pid): pid is number => pid !== undefined);
  }

  /**
   * Take a new worker in: answer its messages, send it `start` when it says hello.
   * @returns its readiness and where its channel delivers messages and its end.
   */
  attach(ch: WorkerChannel): Attached {
    this.channels.add(ch);
    let resolveReady!: () => void;
    let rejectReady!: (err: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    ready.catch(() => undefined); // a caller that stopped waiting must not see an unhandled rejection
    const receive = (msg: WorkerMessage): void => {
      switch (msg.t) {
        case 'hello':
          // A worker that finished booting after stop() began gets told to stop, not to start.
          if (this.stopping) this.sendTo(ch, { t: 'shutdown' });
          // Every worker listens with the configured address, port 0 included: node:cluster keys the
          // shared listener by those arguments, so all workers get the same (random) port.
          else this.sendTo(ch, { t: 'start', config: this.config, instances: this.snapshot() });
          break;
        case 'ready':
          this.listening.add(ch);
          this.bound = { port: msg.port, address: msg.address, family: msg.family };
          resolveReady();
          break;
        case 'failed':
          rejectReady(Object.assign(new Error(`proxy worker could not start: ${msg.message}`), { code: msg.code }));
          break;
        case 'report':
          this.reports.set(ch, { inflight: msg.inflight, held: msg.held });
          break;
        case 'eject': {
          const u = this.pool.get(msg.name);
          if (u) this.ejector.ejectNow(u, `${msg.reason} (${ch.label})`);
          break;
        }
        case 'recovered': {
          const u = this.pool.get(msg.name);
          if (u) this.ejector.recovered(u);
          break;
        }
        default: {
          const p = this.pending.get(msg.id);
          if (p) {
            this.pending.delete(msg.id);
            clearTimeout(p.timer);
            p.resolve(msg);
          }
        }
      }
    };
    const ended = (reason: string): void => {
      this.channels.delete(ch);
      this.listening.delete(ch);
      this.reports.delete(ch);
      rejectReady(new Error(`proxy worker exited (${reason}) before it was ready`));
    };
    return { ready, receive, ended };
  }

  /** Tell every worker to shut down (each lets its requests finish) and wait until all have stopped. */
  async stop(): Promise<void> {
    this.stopping = true;
    const exits = [...this.channels].map((ch) => ch.exited());
    for (const ch of this.channels) this.sendTo(ch, { t: 'shutdown' });
    await Promise.all(exits);
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.resolve(null);
    }
  }
}

/**
 * Start the one worker of one-process mode, in this process.
 * @param logger for the request path's rare errors.
 * @throws the listen error itself (e.g. EADDRINUSE) when the public port cannot be bound.
 */
export async function startInProcessWorker(set: WorkerSet, logger: Logger): Promise<void> {
  let stopped!: () => void;
  const exited = new Promise<void>((resolve) => (stopped = resolve));
  let failed!: (err: Error) => void;
  const failure = new Promise<never>((_, reject) => (failed = reject));
  let connected = true;
  let attached: Attached | null = null;
  const worker = new ServingWorker({
    send: (msg) => attached?.receive(msg),
    startFailed: (err) => {
      connected = false;
      failed(err); // first, so the caller sees the listen error itself
      attached?.ended('start failed');
      stopped();
    },
    stopped: () => {
      connected = false;
      attached?.ended('stopped');
      stopped();
    },
    logger,
    exclusive: true,
    reportEveryMs: null,
  });
  attached = set.attach({
    label: 'in-process worker',
    pid: undefined,
    isConnected: () => connected,
    send: (msg) => worker.handle(msg),
    counts: () => worker.counts(),
    exited: () => exited,
  });
  worker.announce();
  await Promise.race([attached.ready, failure]);
}
