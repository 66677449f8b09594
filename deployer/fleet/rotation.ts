/**
 * Instances the proxy keeps out of rotation (draining or disabled) under a STALE lock: a deploy
 * was killed mid-rollout and nothing running will put them back. `lockstep status` must not call
 * such a fleet in PARITY (issue 12, item 6). An instance drained by hand with no lock at all is
 * shown in the proxy column but is not judged here (an operator may drain on purpose; `lockstep
 * drift` names it as `proxy-state`).
 */
import { judgeHolder } from './lock.ts';
import type { InstanceStatus } from './status.ts';

export interface OutOfRotation {
  instance: string;
  /** The proxy's admin state: `draining` or `disabled`. */
  state: string;
  /** The lock's holder and why it is stale. */
  why: string;
}

/**
 * The instances out of rotation in the proxy under a stale lock.
 * @param rows `fleetStatus` rows. @param ttlMs deploy.lock_ttl_ms (ms). @param nowMs now (ms since epoch).
 */
export function outOfRotation(rows: Pick<InstanceStatus, 'instance' | 'proxy' | 'lock'>[], ttlMs: number, nowMs = Date.now()): OutOfRotation[] {
  const found: OutOfRotation[] = [];
  for (const r of rows) {
    const state = r.proxy?.state;
    if (state !== 'draining' && state !== 'disabled') continue;
    if (!r.lock) continue;
    const judged = judgeHolder(r.lock, nowMs, ttlMs);
    if (!judged.stale) continue;
    const who = `${String(r.lock.user ?? '?')}@${String(r.lock.machine ?? '?')} pid ${String(r.lock.pid ?? '?')}`;
    found.push({ instance: r.instance, state, why: `under the STALE lock of ${who} (${judged.reason})` });
  }
  return found;
}

/** One verdict line for `lockstep status` naming the instances out of rotation and the way back. */
export function rotationVerdict(found: OutOfRotation[]): string {
  return (
    `NOT IN PARITY: ${found.map((f) => `${f.instance} is ${f.state} in the proxy ${f.why}`).join('; ')} ` +
    '(exit 1; recover: `lockstep lock release --force`, then `lockstep drift --repair`)'
  );
}
