/**
 * Tell the proxy a rollout is in progress (POST /admin/rollout), so its dashboard says
 * "ROLLING OUT r2: 1 of 3 (holder)" rather than DRIFT. The announcement is refreshed at every
 * progress line and at least every ANNOUNCE_EVERY_MS, expires on the proxy after ANNOUNCE_TTL_MS
 * without a refresh (a killed deployer), and is cleared when the rollout ends. Best effort: a
 * proxy that does not answer never stops or slows a rollout.
 */
import type { RolloutInProgress } from '../../verdict/fleet-verdict.ts';

/** Refresh period and lifetime of an announcement, ms. */
export const ANNOUNCE_EVERY_MS = 5000;
export const ANNOUNCE_TTL_MS = 20_000;

/** Where announcements go: the deployer's proxy control implements it. */
export interface RolloutAnnouncer {
  /** Announce or refresh (`rollout`), or clear (null). May throw; the caller ignores failures. */
  announce(rollout: RolloutInProgress | null, ttlMs: number): Promise<void>;
}

/** A running announcement: update its counts and phase, and stop it at the end. */
export interface Announcement {
  update(change: Partial<Pick<RolloutInProgress, 'done' | 'phase'>>): void;
  /** Clear the announcement on the proxy (waits for it, bounded by the client's timeout). */
  end(): Promise<void>;
}

/**
 * Start announcing `initial` through `to` (nothing happens when `to` is undefined).
 * Sends are serialised, so the proxy never sees an older state after a newer one.
 */
export function startAnnouncement(to: RolloutAnnouncer | undefined, initial: RolloutInProgress): Announcement {
  if (!to) return { update: () => {}, end: async () => {} };
  const state: RolloutInProgress = { ...initial };
  let chain: Promise<void> = Promise.resolve();
  let ended = false;
  const send = (value: RolloutInProgress | null): void => {
    chain = chain.then(() => to.announce(value, ANNOUNCE_TTL_MS)).catch(() => {});
  };
  send({ ...state });
  const timer = setInterval(() => send({ ...state }), ANNOUNCE_EVERY_MS);
  timer.unref();
  return {
    update(change) {
      if (ended) return;
      Object.assign(state, change);
      send({ ...state });
    },
    async end() {
      if (ended) return;
      ended = true;
      clearInterval(timer);
      send(null);
      await chain;
    },
  };
}
