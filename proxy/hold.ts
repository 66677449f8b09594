/**
 * Requests held for a pinned instance that is draining for a restart. The session's data lives on
 * that instance, so sending the request elsewhere would lose it; instead it waits (body unread)
 * until the instance is back, or until the hold timeout, when it is re-pinned elsewhere.
 */
import type { Upstream } from './upstream.ts';

/** One held request; `payload` is whatever the request path needs to resume it. */
export interface Held<T> {
  readonly upstream: Upstream;
  readonly payload: T;
  timer: NodeJS.Timeout | null;
}

/** Held requests per instance, each with its hold timer. */
export class HoldQueue<T> {
  private readonly byUpstream = new Map<Upstream, Set<Held<T>>>();

  /**
   * Hold `payload` for `upstream`.
   * @param timeoutMs after this many ms `onExpire` runs (and the entry is gone).
   * @returns the entry, to `cancel` it when the client leaves first.
   */
  add(upstream: Upstream, payload: T, timeoutMs: number, onExpire: (held: Held<T>) => void): Held<T> {
    const held: Held<T> = { upstream, payload, timer: null };
    held.timer = setTimeout(() => {
      if (this.remove(held)) onExpire(held);
    }, timeoutMs);
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
