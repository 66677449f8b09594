/**
 * The one path by which `deploy`, `rollback` and `drift --repair` run a rollout on a locked
 * fleet, and the one sentence that says what state the fleet was left in. The rollout settings
 * come from the inventory, and the lock's heartbeat is refreshed before every batch.
 */
import type { Fleet } from '../fleet/fleet.ts';
import type { InstanceOps } from '../fleet/instance.ts';
import { lockHeartbeat } from '../fleet/lock.ts';
import { holderLabel } from '../fleet/status-verdict.ts';
import type { Manifest } from '../build/manifest.ts';
import { rollout, rolloutSettings, type InstanceOutcome, type ProxyControl, type RolloutResult } from './rollout.ts';

export interface FleetRolloutOptions {
  /** The fleet whose lock `holder` holds. */
  fleet: Fleet;
  /** The instances to roll out (default: every instance of the fleet). */
  ops?: InstanceOps[];
  /** The lock holder record (its heartbeat is refreshed before every batch). */
  holder: Record<string, unknown>;
  manifest: Manifest;
  /** Release each instance ran before, by instance name: where a failed batch goes back to. */
  previous: Map<string, string | null>;
  proxy?: ProxyControl;
  progress: (instance: string, line: string, phase?: string) => void;
  signal?: AbortSignal;
  /** History event recorded for a successful activation (default `activate`). */
  event?: 'activate' | 'rollback';
}

/** A rollout's result with the sentence that says what the fleet serves now. */
export interface FleetRolloutResult extends RolloutResult {
  state: string;
}

/**
 * Run a rollout of `manifest` over the locked fleet with the inventory's rollout settings.
 * @returns the rollout's per-instance outcomes and `state` (see `describeFleetState`).
 * Never throws for an instance failure.
 */
export async function runFleetRollout(o: FleetRolloutOptions): Promise<FleetRolloutResult> {
  const result = await rollout({
    ops: o.ops ?? o.fleet.ops,
    manifest: o.manifest,
    previous: o.previous,
    ...rolloutSettings(o.fleet.inventory.deploy),
    signal: o.signal,
    beforeBatch: lockHeartbeat(o.fleet, o.holder),
    proxy: o.proxy,
    progress: o.progress,
    event: o.event,
    holder: holderLabel(o.holder),
    operation: o.fleet.ops[0]?.audit?.operation ?? (o.event === 'rollback' ? 'rollback' : 'deploy'),
  });
  return { ...result, state: describeFleetState(result.outcomes, result.ok) };
}

/**
 * What the fleet serves after a rollout, in one sentence: `every instance serves R` when it
 * succeeded; `rolled back: the whole fleet serves R` when it failed and every instance is back on
 * one release; else `MIXED FLEET: web-1=R1, web-2=R2, ...` (an instance that serves nothing
 * shows `none`, one that could not be reached `unreachable`); instances the rollout left draining
 * in the proxy are named after it.
 * @param outcomes the rollout's per-instance outcomes. @param ok whether the rollout succeeded.
 */
export function describeFleetState(outcomes: InstanceOutcome[], ok: boolean): string {
  const draining = outcomes.filter((o) => o.draining).map((o) => o.instance);
  const drainNote = draining.length ? `; left DRAINING in the proxy: ${draining.join(', ')} (run \`lockstep drift --repair\`)` : '';
  const releases = new Set(outcomes.map((o) => (o.unreachable ? 'unreachable' : o.now)));
  if (releases.size === 1 && !releases.has('unreachable')) {
    const only = [...releases][0] ?? 'nothing';
    return (ok ? `every instance serves ${only}` : `rolled back: the whole fleet serves ${only}`) + drainNote;
  }
  return `MIXED FLEET: ${outcomes.map((o) => `${o.instance}=${o.unreachable ? 'unreachable' : (o.now ?? 'none')}`).join(', ')}${drainNote}`;
}
