/**
 * A stale deploy lock never excuses drift (issue 12, item 6). A deploy that was killed leaves its
 * lock on the hosts and may leave an instance draining or disabled in the proxy; only a LIVE
 * lock (fleet/lock.ts judgeHolder: heartbeat within `deploy.lock_ttl_ms`, and on this machine a
 * holder process that still exists) means "a rollout is in progress". This file decides whether
 * a live lock is held and names every stale lock as its own drift item, with the one command
 * that clears it.
 */
import { judgeHolder } from '../fleet/lock.ts';
import type { DriftItem, InstanceDrift } from './types.ts';

/** The command that breaks stale locks (never live ones). */
export const STALE_LOCK_RECOVERY = 'lockstep lock release --force';

/**
 * True when some holder record is a live lock.
 * @param holders lock holder records (null: no lock). @param ttlMs deploy.lock_ttl_ms (ms).
 * @param nowMs current time (ms since epoch).
 */
export function liveLockHeld(holders: (Record<string, unknown> | null)[], ttlMs: number, nowMs = Date.now()): boolean {
  return holders.some((h) => h !== null && !judgeHolder(h, nowMs, ttlMs).stale);
}

/**
 * The drift item of a stale lock, or null when `holder` is absent or live.
 * @param holder the instance's lock holder record (owner token removed).
 * @param ttlMs deploy.lock_ttl_ms (ms). @param nowMs current time (ms since epoch).
 * @returns a `stale-lock` item naming user@machine, pid, age (s), why it is stale and the recovery.
 */
export function staleLockItem(holder: Record<string, unknown> | null, ttlMs: number, nowMs = Date.now()): DriftItem | null {
  if (!holder) return null;
  const judged = judgeHolder(holder, nowMs, ttlMs);
  if (!judged.stale) return null;
  const since = Date.parse(String(holder.heartbeat ?? holder.time ?? ''));
  const ageS = Number.isFinite(since) ? Math.max(0, Math.round((nowMs - since) / 1000)) : null;
  const who = `${String(holder.user ?? '?')}@${String(holder.machine ?? '?')} pid ${String(holder.pid ?? '?')}`;
  return {
    kind: 'stale-lock',
    message:
      `locked by a dead deploy: ${who}${holder.release ? ` (release ${String(holder.release)})` : ''}, ` +
      `${ageS === null ? 'age unknown' : `${ageS} s old`}: stale, ${judged.reason}; it excuses no drift. ` +
      `Recover: \`${STALE_LOCK_RECOVERY}\`, then \`lockstep drift --repair\` puts the instance back on the expected release and in rotation`,
    detail: { user: holder.user ?? null, machine: holder.machine ?? null, pid: holder.pid ?? null, release: holder.release ?? null, age_s: ageS, reason: judged.reason, recover: STALE_LOCK_RECOVERY },
  };
}

/**
 * Add a `stale-lock` item to every checked instance whose lock is stale (its status becomes `drift`).
 * @param rows the scan's instance rows (their `lock` is the holder record). Mutates `rows`.
 */
export function addStaleLockItems(rows: InstanceDrift[], ttlMs: number, nowMs = Date.now()): void {
  for (const row of rows) {
    if (row.status === 'unchecked') continue;
    const item = staleLockItem(row.lock, ttlMs, nowMs);
    if (!item) continue;
    row.items.push(item);
    row.status = 'drift';
  }
}
