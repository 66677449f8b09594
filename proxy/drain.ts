/**
 * Drain and hold: everything that happens between "stop sending new work to this instance" and
 * "it is back, or gone".
 *
 * - **State transitions** (`setInstanceState`, `drainInstance`): the primary marks an instance
 *   enabled, draining or disabled and pushes the change to every worker before it answers; a drain
 *   with a wait then waits for every worker's share.
 * - **Waiting for in-flight to reach 0** (`waitUntilIdle`, `waitForDrain`): in a worker, on its own
 *   requests; at the deadline, long-lived streams (SSE, WebSockets) are closed cleanly, since they
 *   would never end by themselves.
 * - **The hold of pinned requests** (`HoldQueue`): a request pinned to an instance that drains for
 *   a restart waits (body unread) until the instance is back, or until the hold timeout, when it is
 *   re-pinned elsewhere: the session's data lives on that instance. When the fleet's sessions are
 *   shared (`hold.sessionsShared`, e.g. the app keeps them in Redis), nothing is held: the client
 *   is re-pinned to another instance at once.
 */
import type { HoldConfig } from './config.ts';
import type { DrainOutcome } from './control.ts';
import type { UpstreamPool } from './pool.ts';
import type { InstanceState, Upstream, UpstreamStatus } from './upstream.ts';

/** After closing streams at a drain deadline, how long to wait for them to be gone, ms. */
export const STREAM_CLOSE_GRACE_MS = 1_000;

// --- waiting for in-flight to reach 0 ----------------------------------------------------------

interface IdleWaiter {
  resolve: (drained: boolean) => void;
  timer: NodeJS.Timeout;
}

/** Waiters per instance; `Upstream.onIdle` is set exactly while an instance has some. */
const idleWaiters = new WeakMap<Upstream, Set<IdleWaiter>>();

/**
 * Resolve when nothing is in flight on `u` (in this process), or after `timeoutMs`.
 * @param timeoutMs upper bound on the wait, ms.
 * @returns true when in-flight reached 0, false on timeout.
 */
export function waitUntilIdle(u: Upstream, timeoutMs: number): Promise<boolean> {
  if (u.inflight === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    let set = idleWaiters.get(u);
    if (set === undefined) {
      const waiters = new Set<IdleWaiter>();
      set = waiters;
      idleWaiters.set(u, waiters);
      u.onIdle = () => wakeIdleWaiters(u, true);
    }
    const waiter: IdleWaiter = {
      resolve,
      timer: setTimeout(() => {
        const current = idleWaiters.get(u);
        if (current?.delete(waiter) && current.size === 0) {
          idleWaiters.delete(u);
          u.onIdle = null;
        }
        resolve(u.inflight === 0);
      }, timeoutMs),
    };
    set.add(waiter);
  });
}

/**
 * Resolve every wait on `u` now (in-flight reached 0, shutdown, or the instance left the pool).
 * @param drained the answer the waiters get.
 */
export function wakeIdleWaiters(u: Upstream, drained: boolean): void {
  const set = idleWaiters.get(u);
  if (set === undefined) return;
  idleWaiters.delete(u);
  u.onIdle = null;
  for (const w of set) {
    clearTimeout(w.timer);
    w.resolve(drained);
  }
}

/**
 * A worker's share of a drain: wait until nothing is in flight on `u` here; at the deadline close
 * the instance's long-lived streams and give them `STREAM_CLOSE_GRACE_MS` to be gone.
 * @param waitMs upper bound of the first wait, ms.
 * @param closeStreams closes `u`'s SSE streams and WebSockets, returns how many it closed.
 * @returns whether in-flight reached 0, and what is left.
 */
export async function waitForDrain(u: Upstream, waitMs: number, closeStreams: (u: Upstream) => number): Promise<{ drained: boolean; inflight: number }> {
  let drained = await waitUntilIdle(u, waitMs);
  // Other requests are left to finish or to be cut by the restart.
  if (!drained && closeStreams(u) > 0) drained = await waitUntilIdle(u, STREAM_CLOSE_GRACE_MS);
  return { drained, inflight: u.inflight };
}

// --- state transitions (primary) ---------------------------------------------------------------

/** The primary's view of its workers, as far as a drain needs it. */
export interface DrainWorkers {
  /** Push the instance set and states to every worker (ordered before any later message). */
  broadcast(): void;
  /** Every instance's status with in-flight and held summed over the workers, asked live. */
  liveInstances(): Promise<UpstreamStatus[]>;
  /** Ask every worker for its share of a drain; resolves when all answered or at the deadline. */
  drainWait(name: string, waitMs: number): Promise<{ drained: boolean; inflight: number }>;
}

/**
 * Enable or disable an instance, and tell every worker.
 * @returns the instance's status after the change (live counts), or undefined for an unknown name.
 */
export async function setInstanceState(
  pool: UpstreamPool,
  workers: DrainWorkers,
  name: string,
  state: Exclude<InstanceState, 'draining'>,
): Promise<UpstreamStatus | undefined> {
  if (!pool.setState(name, state)) return undefined;
  workers.broadcast();
  return (await workers.liveInstances()).find((s) => s.name === name);
}

/**
 * Mark an instance draining (no new unpinned work; pinned requests are held) and, with `waitMs`,
 * wait until nothing is in flight on it in any worker.
 * @param waitMs bound on the wait, ms; null answers at once with the current in-flight count.
 * @returns the outcome, or undefined for an unknown name.
 */
export async function drainInstance(pool: UpstreamPool, workers: DrainWorkers, name: string, waitMs: number | null): Promise<DrainOutcome | undefined> {
  const u = pool.setState(name, 'draining');
  if (!u) return undefined;
  // Messages to a worker are ordered: every worker applies "draining" before it sees the wait below.
  workers.broadcast();
  if (waitMs === null) {
    const inflight = (await workers.liveInstances()).find((s) => s.name === name)?.inflight ?? 0;
    return { drained: inflight === 0, inflight, state: u.state };
  }
  const { drained, inflight } = await workers.drainWait(name, waitMs);
  return { drained: drained && inflight === 0, inflight, state: u.state };
}

// --- the hold of pinned requests (worker) ------------------------------------------------------

/** One held request; `payload` is whatever the request path needs to resume it. */
export interface Held<T> {
  readonly upstream: Upstream;
  readonly payload: T;
  timer: NodeJS.Timeout | null;
}

/** Held requests per instance, each with its hold timer. */
export class HoldQueue<T> {
  private readonly byUpstream = new Map<Upstream, Set<Held<T>>>();

  constructor(private readonly config: HoldConfig) {}

  /**
   * True when a request pinned to `u` should wait for it rather than move: `u` drains (a restart),
   * is under its hold limit, and its sessions live on it (with `sessionsShared` every instance can
   * serve them, so the client moves at once). The caller also checks `u` is still the pool's instance.
   */
  mayHold(u: Upstream): boolean {
    return u.state === 'draining' && !this.config.sessionsShared && this.config.timeoutMs > 0 && u.held < this.config.maxPerInstance;
  }

  /**
   * Hold `payload` for `upstream` for up to `hold.timeoutMs`; then `onExpire` runs (and the entry is gone).
   * @returns the entry, to `remove` it when the client leaves first.
   */
  add(upstream: Upstream, payload: T, onExpire: (held: Held<T>) => void): Held<T> {
    const held: Held<T> = { upstream, payload, timer: null };
    held.timer = setTimeout(() => {
      if (this.remove(held)) onExpire(held);
    }, this.config.timeoutMs);
    let set = this.byUpstream.get(upstream);
    if (set === undefined) {
      set = new Set();
      this.byUpstream.set(upstream, set);
    }
    set.add(held);
    upstream.held++;
    return held;
  }

  /**
   * Remove one entry (client gone, or expired).
   * @returns false when it was no longer held.
   */
  remove(held: Held<T>): boolean {
    const set = this.byUpstream.get(held.upstream);
    if (set === undefined || !set.delete(held)) return false;
    if (set.size === 0) this.byUpstream.delete(held.upstream);
    if (held.timer) clearTimeout(held.timer);
    held.timer = null;
    held.upstream.held--;
    return true;
  }

  /** Remove and return every entry held for `upstream` (it is back, or gone for good). */
  takeAll(upstream: Upstream): Array<Held<T>> {
    const set = this.byUpstream.get(upstream);
    if (set === undefined) return [];
    const all = [...set];
    for (const h of all) this.remove(h);
    return all;
  }

  /** Every instance with held requests. */
  upstreams(): Upstream[] {
    return [...this.byUpstream.keys()];
  }
}
