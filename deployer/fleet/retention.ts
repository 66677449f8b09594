/**
 * Retention is a fleet decision: one function decides which releases the fleet keeps, and the
 * same set is removed on every instance, so a release is kept on all instances or none and the
 * rollback target (decideRollbackTarget) stays present everywhere. Per-host pruning diverged:
 * after a few deploys and rollbacks no earlier release was on every host and `rollback` refused.
 */
import type { Manifest } from '../build/manifest.ts';
import { releaseDir } from '../remote/layout.ts';
import { shq } from '../transport/shell.ts';
import type { Fleet } from './fleet.ts';
import type { InstanceOps } from './instance.ts';
import { decideRollbackTarget, mergedHistory, readFleetReleases, releaseState, type InstanceReleases } from './releases.ts';

/** What retention decided for the whole fleet. */
export interface RetentionDecision {
  /** Releases kept (on every instance that has them), newest activation first. */
  keep: string[];
  /** Releases removed from every instance that has them, in removal order. */
  remove: string[];
  /** Why each kept release is protected beyond the count, e.g. `current on web-1`, `rollback target`. */
  protectedBy: Record<string, string>;
}

/**
 * Decide which releases the fleet keeps. Every release present on any instance counts once.
 * Never removed: a release that is `current` on any instance, the rollback target from
 * `decideRollbackTarget`, and `deploying`. The rest are removed until at most `keepReleases`
 * remain (protected ones count towards the total): releases failed on any instance that has
 * them first (oldest first), then the oldest by last activation anywhere in the fleet's merged
 * history (never-activated releases count as oldest; ties by release id, which starts with the
 * source time). Pure: reads only `infos`.
 * @param infos every instance's current release, present releases and history (all instances:
 *   a decision on part of the fleet could remove what another instance needs).
 * @param keepReleases `deploy.keep_releases` (>= 1).
 * @param deploying the release a deploy is putting in place, if any.
 */
export function decideRetention(infos: InstanceReleases[], keepReleases: number, deploying: string | null = null): RetentionDecision {
  const present = [...new Set(infos.flatMap((i) => i.present))];
  const protectedBy: Record<string, string> = {};
  for (const i of infos) if (i.current) protectedBy[i.current] ??= `current on ${i.instance}`;
  const { target } = decideRollbackTarget(infos);
  if (target) protectedBy[target] ??= 'rollback target';
  if (deploying) protectedBy[deploying] ??= 'being deployed';

  const lastActivation = new Map<string, string>();
  for (const h of [...mergedHistory(infos)].reverse()) {
    if (h.event === 'activate' || h.event === 'rollback') lastActivation.set(h.release, h.time);
  }
  const oldestFirst = (a: string, b: string): number => {
    const ta = lastActivation.get(a) ?? '';
    const tb = lastActivation.get(b) ?? '';
    return ta < tb ? -1 : ta > tb ? 1 : a < b ? -1 : a > b ? 1 : 0;
  };
  const failed = (r: string): boolean => infos.some((i) => i.present.includes(r) && releaseState(i, r) === 'failed');
  const removable = present.filter((r) => !(r in protectedBy));
  const order = [...removable.filter(failed).sort(oldestFirst), ...removable.filter((r) => !failed(r)).sort(oldestFirst)];
  const remove = order.slice(0, Math.max(0, present.length - keepReleases));
  const keep = present.filter((r) => !remove.includes(r)).sort((a, b) => -oldestFirst(a, b));
  return { keep, remove, protectedBy };
}

/**
 * Remove `releases` on one instance (those it has), then every artifact whose digest no
 * remaining release uses (two release ids can share a digest, and so one artifact).
 * @returns the release ids removed here.
 */
export async function removeReleases(o: InstanceOps, info: InstanceReleases, releases: string[]): Promise<string[]> {
  const here = releases.filter((r) => info.present.includes(r));
  const remaining = info.present.filter((r) => !here.includes(r));
  const digestOf = (r: string): Promise<string | null> =>
    o.transport
      .readFile(`${releaseDir(o.layout, r)}/manifest.json`)
      .then((t) => (JSON.parse(t) as Manifest).digest)
      .catch(() => null);
  const keptDigests = new Set(await Promise.all(remaining.map(digestOf)));
  const goneDigests = new Set((await Promise.all(here.map(digestOf))).filter((d): d is string => !!d && /^[0-9a-f]{64}$/.test(d) && !keptDigests.has(d)));
  const paths = [...here.map((r) => releaseDir(o.layout, r)), ...[...goneDigests].map((d) => `${o.layout.artifacts}/${d}.tar.gz`)];
  if (paths.length > 0) await o.run(`rm -rf ${paths.map(shq).join(' ')}`);
  return here;
}

/** What `pruneFleet` did. */
export interface PruneResult {
  decision: RetentionDecision | null;
  /** Release ids removed, per instance name. */
  removed: Map<string, string[]>;
  /** Set when nothing was removed because the fleet could not be read whole. */
  skipped?: string;
}

/**
 * Apply retention to the fleet (call while holding its lock): read every instance, decide once
 * with `decideRetention`, remove the same releases everywhere. When any instance cannot be read,
 * nothing is removed anywhere (`skipped` says why).
 * @throws never for an instance; a failed removal on one instance is reported per instance.
 */
export async function pruneFleet(fleet: Fleet, keepReleases: number, deploying: string | null): Promise<PruneResult> {
  const { infos, unreachable } = await readFleetReleases(fleet);
  if (unreachable.length > 0) {
    return { decision: null, removed: new Map(), skipped: `cannot read ${unreachable.map((u) => u.instance).join(', ')}; retention removed nothing anywhere` };
  }
  const decision = decideRetention(infos, keepReleases, deploying);
  const removed = new Map<string, string[]>();
  if (decision.remove.length === 0) return { decision, removed };
  const byName = new Map(infos.map((i) => [i.instance, i]));
  const results = await fleet.each(async (o) => removed.set(o.name, await removeReleases(o, byName.get(o.name)!, decision.remove)));
  const failed = results.map((r, i) => ({ r, o: fleet.ops[i]! })).filter(({ r }) => r.status === 'rejected');
  if (failed.length > 0) {
    const why = failed.map(({ r, o }) => `${o.name}: ${(r as PromiseRejectedResult).reason instanceof Error ? ((r as PromiseRejectedResult).reason as Error).message : String((r as PromiseRejectedResult).reason)}`);
    return { decision, removed, skipped: `removal failed on ${why.join('; ')}` };
  }
  return { decision, removed };
}
