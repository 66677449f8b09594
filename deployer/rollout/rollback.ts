/**
 * `lockstep rollback [--to RELEASE]`: put the fleet back on a release every instance already
 * has, through the same rolling machinery and gates as a deploy. No build, no upload.
 */
import { LockHeldError, LockstepError } from '../../config/errors.ts';
import { newLockHolder, lockFleetWaiting, unlockFleet } from '../fleet/lock.ts';
import type { DeployReport } from './deploy.ts';
import { openFleet, reasonOf, type TransportFactory } from '../fleet/fleet.ts';
import { publishReleaseAssets } from '../fleet/assets.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { Manifest } from '../build/manifest.ts';
import { readFleetReleases, decideRollbackTarget, verifyReleaseOnHost, type InstanceReleases } from '../fleet/releases.ts';
import type { InstanceOutcome, ProxyControl } from './rollout.ts';
import { describeFleetState, runFleetRollout } from './run.ts';

export interface RollbackOptions {
  to?: string;
  factory?: TransportFactory;
  proxy?: ProxyControl;
  progress?: (instance: string, line: string, phase?: string) => void;
  lockWaitMs?: number;
  /** The operator's note (`-m`), recorded with the lock and in the history. */
  message?: string;
  /** Abort (Ctrl-C/SIGTERM): the step in progress finishes, switched instances roll back, the lock is released. */
  signal?: AbortSignal;
  /**
   * Roll back only these instances (`--instances`, fleet/selection.ts). The lock, the reading of
   * releases and history, the target decision and its verification still cover the whole fleet.
   */
  instances?: string[];
}

/** What each instance has, for a refusal message. */
function describeFleet(infos: InstanceReleases[]): string[] {
  return infos.map((i) => `${i.instance}: current ${i.current ?? 'none'}; present ${i.present.join(', ') || 'none'}`);
}

/**
 * Roll the fleet back. The lock is taken first; the releases, the history and the target are
 * read under it. The default target is the newest release that succeeded before the
 * current one and is present and verified on every instance.
 * @throws LockstepError LOCKSTEP_NO_ROLLBACK_TARGET (exit 3) listing what each instance has when
 *   no such release exists or `--to` is missing or fails verification somewhere.
 */
export async function rollback(inventory: Inventory, options: RollbackOptions = {}): Promise<DeployReport> {
  const started = Date.now();
  const progress = options.progress ?? (() => {});
  const fleet = openFleet(inventory, { factory: options.factory, audit: { operation: 'rollback', message: options.message } });
  try {
    // Take the lock, then read: the target is decided on the state under the lock, so a deploy
    // that finished while this one waited is taken into account.
    const holder = newLockHolder(options.to ?? 'rollback', options.message ?? 'rollback');
    try {
      await lockFleetWaiting(fleet, holder, options.lockWaitMs ?? 0, progress, options.signal);
    } catch (e) {
      if (e instanceof LockHeldError) throw new LockstepError(e.code, `${e.message}; nothing was changed`, 3);
      if (e instanceof LockstepError && e.exitCode === 2) throw e;
      throw new LockstepError('LOCKSTEP_UNREACHABLE', `cannot roll back: taking the lock failed: ${(e as Error).message}; no instance was changed`, 3);
    }
    try {
      if (options.signal?.aborted) throw new LockstepError('LOCKSTEP_INTERRUPTED', 'interrupted (signal) before any change; nothing was changed', 3);
      const { infos, unreachable } = await readFleetReleases(fleet);
      if (unreachable.length > 0) {
        throw new LockstepError(
          'LOCKSTEP_UNREACHABLE',
          `cannot roll back: ${unreachable.map((u) => `${u.instance} (${u.error})`).join(', ')}; no instance was changed`,
          3,
        );
      }
      const target = options.to ?? decideRollbackTarget(infos).target;
      if (!target) {
        throw new LockstepError('LOCKSTEP_NO_ROLLBACK_TARGET', 'no release that succeeded before the current one is present on every instance; nothing was changed', 3, describeFleet(infos));
      }
      holder.release = target;
      progress('rollback', `target ${target}${options.to ? '' : ' (newest earlier release present on every instance, read under the lock)'}`);
      const verified = await fleet.each((o) => verifyReleaseOnHost(o, target));
      const bad = verified.map((r, i) => ({ r, o: fleet.ops[i]! })).filter(({ r }) => r.status === 'rejected' || r.value === null);
      if (bad.length > 0) {
        throw new LockstepError(
          'LOCKSTEP_NO_ROLLBACK_TARGET',
          `release ${target} is missing or fails verification on ${bad.map(({ o }) => o.name).join(', ')}; nothing was changed`,
          3,
          describeFleet(infos),
        );
      }
      const manifest = (verified[0] as PromiseFulfilledResult<Manifest>).value;
      // The target's hashed assets on every instance before any switch (pruned or never published).
      const published = await fleet.each((o) => publishReleaseAssets(o, manifest));
      const unpublished = published.map((r, i) => ({ r, o: fleet.ops[i]! })).filter(({ r }) => r.status === 'rejected');
      if (unpublished.length > 0) {
        throw new LockstepError('LOCKSTEP_ASSET_STORE', `publishing the assets of ${target} failed on ${unpublished.map(({ o }) => o.name).join(', ')}: ${reasonOf(unpublished[0]!.r)}; nothing was changed`, 3);
      }
      const selected = options.instances ? fleet.ops.filter((o) => options.instances!.includes(o.name)) : undefined;
      const result = await runFleetRollout({
        fleet,
        ops: selected,
        holder,
        manifest,
        previous: new Map(infos.map((i) => [i.instance, i.current])),
        signal: options.signal,
        proxy: options.proxy,
        progress,
        event: 'rollback',
      });
      // A partial rollback: the untouched instances count in the sentence about the fleet.
      const untouched: InstanceOutcome[] = selected ? infos.filter((i) => !options.instances!.includes(i.instance)).map((i) => ({ instance: i.instance, before: i.current, now: i.current, state: 'untouched' })) : [];
      const outcomes = [...result.outcomes, ...untouched].sort((a, b) => fleet.ops.findIndex((o) => o.name === a.instance) - fleet.ops.findIndex((o) => o.name === b.instance));
      return {
        ok: result.ok,
        release: manifest.release,
        digest: manifest.digest,
        phase: result.ok ? 'done' : 'rollout',
        instances: outcomes.map((o) => ({ ...o, uploadedBytes: 0, reused: true })),
        failure: result.failure,
        state: selected ? describeFleetState(outcomes, result.ok) : result.state,
        durationMs: Date.now() - started,
      };
    } finally {
      await unlockFleet(fleet, String(holder.token), progress);
    }
  } finally {
    await fleet.close();
  }
}
