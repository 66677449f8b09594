/**
 * The proxy's access log: one JSON line per (sampled) request, `{time, method, path, status,
 * instance, duration_ms, request_id}`, written off the hot path: lines go into pino's
 * asynchronous destination (sonic-boom: buffered in memory, written by the event loop in
 * chunks of at least `MIN_CHUNK_BYTES`, flushed every second and at close), never with a
 * synchronous write on the request path. The path is logged without its query string (queries
 * can carry secrets). `sampleRate` 1 logs every request, 0.1 one in ten (deterministically:
 * every 10th, no random draw per request); 0 turns it off. The default rate comes from a
 * measurement (README "Proxy access log", bench/proxy.ts with ACCESS_LOG_RATE).
 */
import pino from 'pino';

export interface AccessLogConfig {
  /** Absolute path of the log file (appended; its directory is created). */
  path: string;
  /** Share of requests logged, 0..1. */
  sampleRate: number;
}

/** Buffered bytes before a write is issued (below sonic-boom's 16 KiB maxWrite; the timer flushes smaller amounts every second). */
const MIN_CHUNK_BYTES = 4096;
const FLUSH_EVERY_MS = 1000;

type Destination = ReturnType<typeof pino.destination>;

/** Writes sampled access lines; one per proxy process (each worker appends to the same file). */
export class AccessLog {
  private readonly dest: Destination;
  private readonly timer: NodeJS.Timeout;
  private credit = 0;
  private readonly perMillion: number;

  constructor(config: AccessLogConfig) {
    this.perMillion = Math.round(Math.min(1, Math.max(0, config.sampleRate)) * 1_000_000);
    this.dest = pino.destination({ dest: config.path, sync: false, mkdir: true, append: true, minLength: MIN_CHUNK_BYTES });
    // A broken log file must never take the proxy down; it costs the log only.
    this.dest.on('error', () => {});
    this.timer = setInterval(() => this.flush(), FLUSH_EVERY_MS).unref();
  }

  /**
   * Record one finished request (sampled). @param method, url from the client's request;
   * @param status the status sent (0 when none); @param instance the instance that answered
   * (`-` when none); @param durationMs from receipt to close, ms; @param requestId X-Request-Id.
   */
  record(method: string | undefined, url: string | undefined, status: number, instance: string, durationMs: number, requestId: string | string[] | undefined): void {
    // Integer parts per million: 0.1 logs exactly every 10th request (no float drift).
    this.credit += this.perMillion;
    if (this.credit < 1_000_000) return;
    this.credit -= 1_000_000;
    const q = url === undefined ? -1 : url.indexOf('?');
    const path = url === undefined ? '' : q === -1 ? url : url.slice(0, q);
    this.dest.write(
      `{"time":"${new Date().toISOString()}","method":${JSON.stringify(method ?? '')},"path":${JSON.stringify(path)},"status":${status},"instance":${JSON.stringify(instance)},"duration_ms":${Math.round(durationMs * 10) / 10},"request_id":${JSON.stringify(typeof requestId === 'string' ? requestId : null)}}\n`,
    );
  }

  private flush(): void {
    // flush() throws while the destination is still opening its file; the next tick catches up.
    try {
      this.dest.flush();
    } catch {
      /* not ready yet */
    }
  }

  /** Write what is buffered and close the file. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await new Promise<void>((resolve) => {
      const done = (): void => resolve();
      try {
        this.dest.once('close', done);
        this.dest.once('error', done);
        this.dest.end();
      } catch {
        resolve();
      }
    });
  }
}
