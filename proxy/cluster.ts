/**
 * Worker mode: N node:cluster workers share the public port (the primary accepts connections and
 * hands them out round robin), each a `ServingWorker` (`worker.ts`) talking to the primary's
 * `WorkerSet` over IPC. A worker that dies is replaced, with a growing delay when it keeps dying.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { WorkerCounts, WorkerMessage } from './worker-protocol.ts';
import type { WorkerSet } from './worker-set.ts';
import { workerEntry } from './worker-entry.ts';

/**
 * Fork `count` workers into `set` and wait until all listen.
 * @param count number of worker processes (>= 1).
 * @param logger for worker deaths and restarts.
 * @throws an Error naming the cause (with its `code`, e.g. EADDRINUSE) when a worker cannot listen
 *   or exits before it is ready.
 */
export async function forkWorkers(set: WorkerSet, count: number, logger: Logger): Promise<void> {
  cluster.setupPrimary({ ...workerEntry(), args: [] });
  let restartsInARow = 0;

  const fork = (): Promise<void> => {
    const w: Worker = cluster.fork();
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    const attached = set.attach({
      label: `worker ${w.id}`,
      pid: w.process.pid,
      isConnected: () => w.isConnected(),
      send: (msg) => w.send(msg),
      counts: (): WorkerCounts | undefined => undefined, // reported every 200 ms instead
      exited: () => (w.isDead() ? Promise.resolve() : exited),
    });
    w.on('message', (msg: WorkerMessage) => attached.receive(msg));
    w.on('error', () => undefined);
    w.once('exit', (code, signal) => {
      attached.ended(String(signal ?? code));
      if (set.closing) return;
      // A worker that keeps dying must not become a fork loop: wait, longer each time in a row.
      const delayMs = Math.min(100 * 2 ** restartsInARow, 10_000);
      restartsInARow++;
      logger.error({ worker: w.id, code, signal, restartInMs: delayMs }, 'proxy worker died; starting a new one');
      setTimeout(() => {
        if (set.closing) return;
        fork().then(
          () => (restartsInARow = 0),
          (err: unknown) => logger.error({ err }, 'could not restart a proxy worker'),
        );
      }, delayMs).unref();
    });
    return attached.ready;
  };

  // The first worker alone: with port 0 it picks the port the others then share.
  await fork();
  await Promise.all(Array.from({ length: Math.max(1, count) - 1 }, () => fork()));
}
