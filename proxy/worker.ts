/**
 * Entry point of a node:cluster worker (`cluster.ts` forks it; nothing imports it): a
 * `ServingWorker` whose messages travel over IPC.
 */
import { ServingWorker } from './serving.ts';
import type { PrimaryMessage, WorkerMessage } from './worker-protocol.ts';

const worker = new ServingWorker({
  send: (msg: WorkerMessage) => void process.send?.(msg),
  startFailed: (err) => {
    process.send?.({ t: 'failed', message: err.message, code: err.code } satisfies WorkerMessage);
    process.exit(1);
  },
  stopped: () => process.exit(0),
  exclusive: false,
  reportEveryMs: 200,
});

process.on('message', (msg: PrimaryMessage) => worker.handle(msg));

// Messages sent before a listener exists would be lost: the primary sends `start` on this.
worker.announce();

// The primary going away (crash, kill -9) must not leave an orphan serving stale state.
process.on('disconnect', () => process.exit(0));
