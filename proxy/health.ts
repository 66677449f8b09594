/**
 * Active health checks: every `intervalMs`, `GET <healthPath>` on each instance on a fresh
 * connection (a pooled one could hide an app that no longer accepts connections); 200 within
 * `timeoutMs` passes, anything else fails. Rise/fall are applied by `Upstream.recordHealthCheck`.
 */
import http from 'node:http';
import type { HealthCheckConfig } from './config.ts';
import type { UpstreamPool } from './pool.ts';
import type { Upstream } from './upstream.ts';

/**
 * One check.
 * @returns `{ok, detail}`; never throws (every failure is a failed check).
 */
export function checkOnce(url: URL, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean, detail: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ok, detail });
    };
    const req = http.request(url, { method: 'GET', agent: false, headers: { 'user-agent': 'lockstep-proxy-health' } }, (res) => {
      res.resume();
      res.on('error', () => undefined);
      done(res.statusCode === 200, `HTTP ${res.statusCode}`);
    });
    // A wall-clock bound, not a socket-idle one: it also covers a connect that never completes.
    const timer = setTimeout(() => {
      done(false, `no answer within ${timeoutMs} ms`);
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => done(false, err.code ?? err.message));
    req.end();
  });
}

/** Runs the periodic active checks of every instance in the pool and applies rise/fall. */
export class HealthChecker {
  private timers = new Map<Upstream, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly path: string,
    private readonly config: HealthCheckConfig,
    private readonly onChange: (u: Upstream) => void = () => undefined,
  ) {}

  /** Check every instance once, now, and wait for all results (bounded by `timeoutMs`). */
  async checkAll(): Promise<void> {
    await Promise.all(this.pool.upstreams.map((u) => this.checkUpstream(u)));
  }

  /** Start the periodic loop for every instance of the pool (also picks up instances added later). */
  start(): void {
    this.stopped = false;
    this.sync();
  }

  /** Align the timers with the pool after a reload: new instances get a loop, removed ones lose it. */
  sync(): void {
    if (this.stopped) return;
    const current = new Set(this.pool.upstreams);
    for (const [u, t] of this.timers) {
      if (!current.has(u)) {
        clearTimeout(t);
        this.timers.delete(u);
      }
    }
    for (const u of current) {
      if (!this.timers.has(u)) this.schedule(u, u.checked ? this.config.intervalMs : 0);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private schedule(u: Upstream, delayMs: number): void {
    const t = setTimeout(() => {
      void this.checkUpstream(u).then(() => {
        if (!this.stopped && this.timers.has(u)) this.schedule(u, this.config.intervalMs);
      });
    }, delayMs);
    t.unref();
    this.timers.set(u, t);
  }

  private async checkUpstream(u: Upstream): Promise<void> {
    const { ok, detail } = await checkOnce(new URL(this.path, u.target), this.config.timeoutMs);
    if (this.stopped) return;
    if (u.recordHealthCheck(ok, this.config.rise, this.config.fall)) {
      this.pool.logHealthChange(u, detail);
      this.onChange(u);
    }
  }
}
