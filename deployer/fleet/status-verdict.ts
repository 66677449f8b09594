/**
 * `lockstep status` rows turned into the one fleet verdict (verdict/fleet-verdict.ts): each
 * instance's /version, health and proxy view; SSH failures as unread sources; a LIVE lock (or the
 * rollout the deployer announced to the proxy) as a rollout in progress; instances out of rotation
 * under a STALE lock as a fleet-level problem (fleet/rotation.ts).
 */
import { fleetVerdict, type FleetVerdict, type RolloutInProgress, type VerdictInstance } from '../../verdict/fleet-verdict.ts';
import { judgeHolder } from './lock.ts';
import { outOfRotation, rotationVerdict } from './rotation.ts';
import type { InstanceStatus } from './status.ts';

/** `user@machine pid N` of a lock holder record. */
export function holderLabel(lock: Record<string, unknown>): string {
  return `${String(lock.user ?? '?')}@${String(lock.machine ?? '?')} pid ${String(lock.pid ?? '?')}`;
}

/**
 * The rollout in progress by the instances' locks: the first LIVE lock's release and holder, and
 * how many instances already run that release. Null when no instance holds a live lock.
 * @param ttlMs deploy.lock_ttl_ms (ms). @param nowMs now (ms since epoch).
 */
export function rolloutFromLocks(rows: Pick<InstanceStatus, 'lock' | 'running'>[], ttlMs: number, nowMs = Date.now()): RolloutInProgress | null {
  const live = rows.map((r) => r.lock).find((l): l is Record<string, unknown> => l !== null && !judgeHolder(l, nowMs, ttlMs).stale);
  if (!live) return null;
  const release = String(live.release ?? '?');
  const message = typeof live.message === 'string' && live.message !== 'deploy' ? `, "${live.message}"` : '';
  return { release, holder: `${holderLabel(live)}${message}`, done: rows.filter((r) => r.running?.release === release).length, total: rows.length };
}

/** One verdict instance from a status row. */
export function verdictInstance(r: InstanceStatus): VerdictInstance {
  const unread: string[] = [];
  if (!r.reachable) unread.push(`ssh unreachable${r.error ? `: ${r.error}` : ''} (disk and lock not read)`);
  if (r.proxy?.state === 'unreachable') unread.push(`proxy admin API unreachable${r.proxy.error ? `: ${r.proxy.error}` : ''}`);
  const proxyState = r.proxy && r.proxy.state !== 'unreachable' ? r.proxy.state : null;
  return {
    name: r.instance,
    release: r.running?.release ?? null,
    digest: r.running?.digest ?? null,
    healthy: r.healthy,
    versionError: r.running ? null : 'did not answer',
    proxyState,
    proxyHealthy: proxyState ? r.proxy!.healthy : null,
    unread,
  };
}

/**
 * The verdict of `lockstep status`.
 * @param rows fleetStatus rows. @param ttlMs deploy.lock_ttl_ms (ms).
 * @param announced the rollout the deployer announced to the proxy (GET /admin/rollout), if any:
 *   it wins over the locks (it knows k of n as the deployer counts it) while a live lock backs
 *   it, or while some lock could not be read.
 */
export function statusVerdict(rows: InstanceStatus[], ttlMs: number, announced: RolloutInProgress | null = null, nowMs = Date.now()): FleetVerdict {
  const idle = outOfRotation(rows, ttlMs, nowMs);
  const problems = idle.length ? [rotationVerdict(idle).replace(/^NOT IN PARITY: /, '')] : [];
  // The announcement (refreshed by a live deployer, kept by the proxy up to its ttl) counts only
  // while a live lock backs it: a deployer killed mid-rollout leaves an announcement behind for
  // a few seconds, and its stale lock must be reported as such, not as a rollout. When a lock
  // could not be read (ssh unreachable), the announcement is the best knowledge there is.
  const fromLocks = rolloutFromLocks(rows, ttlMs, nowMs);
  const locksRead = rows.every((r) => r.reachable);
  const rollout = fromLocks ? (announced ?? fromLocks) : locksRead ? null : announced;
  return fleetVerdict({ instances: rows.map(verdictInstance), rollout, problems });
}
