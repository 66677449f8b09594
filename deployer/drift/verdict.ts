/**
 * The fleet verdict of a drift scan: the same function as `lockstep status` and the dashboard
 * (verdict/fleet-verdict.ts), fed with what the scan read: each instance's /version, health and
 * proxy view, a LIVE lock held by another operation as a rollout in progress, and instances the
 * scan could not check as unread sources.
 */
import { fleetVerdict, type FleetVerdict, type VerdictInstance } from '../../verdict/fleet-verdict.ts';
import { rolloutFromLocks } from '../fleet/status-verdict.ts';
import type { DriftReport, InstanceDrift } from './types.ts';

function verdictInstance(i: InstanceDrift, proxyRead: boolean): VerdictInstance {
  const missing = i.items.some((it) => it.kind === 'proxy-missing');
  return {
    name: i.instance,
    release: i.running?.release ?? null,
    digest: i.running?.digest ?? null,
    healthy: i.healthy,
    versionError: i.running ? null : 'did not answer',
    proxyState: i.proxy ? i.proxy.state : proxyRead && missing ? 'absent' : null,
    proxyHealthy: i.proxy ? i.proxy.healthy : null,
    unread: i.status === 'unchecked' ? [`not checked: ${i.error ?? 'unknown error'}`] : [],
  };
}

/**
 * The verdict of a drift report. @param ttlMs deploy.lock_ttl_ms (ms).
 * @returns the FleetVerdict; never throws.
 */
export function driftVerdict(r: Omit<DriftReport, 'verdict'>, ttlMs: number, nowMs = Date.now()): FleetVerdict {
  const rollout = r.lockHeld ? rolloutFromLocks(r.instances, ttlMs, nowMs) : null;
  return fleetVerdict({ instances: r.instances.map((i) => verdictInstance(i, r.proxy.status === 'ok')), rollout });
}
