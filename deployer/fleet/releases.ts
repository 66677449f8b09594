/**
 * Releases across the fleet: which release is in which state on which instance, which one a
 * rollback would go to, and retention. Judged by the history we record, never by directory
 * names or mtimes (Capistrano's "previous = second newest dir" differs per host after a failure).
 */
import type { HistoryEntry, InstanceOps } from './instance.ts';
import { reasonOf, type Fleet } from './fleet.ts';
import * as cmd from '../remote/commands.ts';
import { releaseDir } from '../remote/layout.ts';
import { shq } from '../transport/shell.ts';
import type { Manifest } from '../build/manifest.ts';
import { isCleanDiff } from '../remote/parse.ts';

export type ReleaseState = 'active' | 'previous' | 'failed' | 'unpacked' | 'absent';

export interface InstanceReleases {
  instance: string;
  current: string | null;
  /** Release ids present under releases/. */
  present: string[];
  history: HistoryEntry[];
}

/** Read current, present releases and history of one instance. */
export async function readInstanceReleases(o: InstanceOps): Promise<InstanceReleases> {
  await o.transport.connect();
  const [current, list, history] = await Promise.all([o.currentRelease(), o.run(cmd.listReleases(o.layout)), o.readHistory()]);
  return { instance: o.name, current, present: list.split('\n').filter(Boolean).sort(), history };
}

/**
 * The state of `release` on one instance: active (current), previous (the release that was
 * active just before current, by history), failed (its last recorded outcome was a failure),
 * unpacked (present, otherwise), absent.
 */
export function releaseState(info: InstanceReleases, release: string): ReleaseState {
  if (info.current === release) return 'active';
  if (!info.present.includes(release)) return 'absent';
  const last = [...info.history].reverse().find((h) => h.release === release && h.event !== 'lock-broken' && h.event !== 'probe');
  if (last?.event === 'failed') return 'failed';
  const activations = info.history.filter((h) => h.event === 'activate' || h.event === 'rollback');
  const lastActive = activations.at(-1);
  if (lastActive && lastActive.release === info.current && lastActive.previous === release) return 'previous';
  return 'unpacked';
}

/** Releases that ever activated successfully on an instance, newest activation first (no repeats). */
export function succeededReleases(history: HistoryEntry[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const h of [...history].reverse()) {
    if ((h.event === 'activate' || h.event === 'rollback') && !seen.has(h.release)) {
      seen.add(h.release);
      out.push(h.release);
    }
  }
  return out;
}

/** Merge the histories of all instances, newest first. */
export function mergedHistory(infos: InstanceReleases[]): HistoryEntry[] {
  return infos.flatMap((i) => i.history).sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
}

/** The fleet's rollback target, decided by `decideRollbackTarget`. */
export interface RollbackDecision {
  /** Where `lockstep rollback` goes: the newest candidate present on every instance, or null (it refuses). */
  target: string | null;
  /**
   * The newest release that qualifies by history alone, present or not: what the fleet should be
   * able to roll back to. When it differs from `target`, it is missing somewhere (drift).
   */
  intended: string | null;
  /** Every release present everywhere that qualifies, newest activation first. */
  candidates: string[];
}

/**
 * The one rule for the rollback target, used by `rollback`, `releases`, `drift` and `status`.
 * A release qualifies when it activated successfully somewhere in the fleet (by the merged
 * history, never by directory names), is not what any instance runs now nor `expected`, is not
 * a release the fleet was rolled back *from* (unless activated again since: so repeated
 * rollbacks walk further back instead of bouncing between two releases), and is not failed on
 * any instance that has it. `target` also requires presence on every instance.
 * @param infos every instance's current release, present releases and history.
 * @param expected the release the fleet should run (drift's expected release), if known.
 */
export function decideRollbackTarget(infos: InstanceReleases[], expected?: string | null): RollbackDecision {
  const excluded = new Set<string | null>([...infos.map((i) => i.current), expected ?? null]);
  const chronological = [...mergedHistory(infos)].reverse();
  const rolledAwayFrom = new Set<string>();
  for (const h of chronological) {
    if (h.event === 'rollback' && h.previous) rolledAwayFrom.add(h.previous);
    if (h.event === 'activate') rolledAwayFrom.delete(h.release);
  }
  const qualifying = succeededReleases(chronological).filter(
    (r) => !excluded.has(r) && !rolledAwayFrom.has(r) && !infos.some((i) => i.present.includes(r) && releaseState(i, r) === 'failed'),
  );
  const candidates = qualifying.filter((r) => infos.every((i) => i.present.includes(r)));
  return { target: candidates[0] ?? null, intended: qualifying[0] ?? null, candidates };
}

/** Verify a release directory on the host against its own manifest. @returns the manifest when clean, else null. */
export async function verifyReleaseOnHost(o: InstanceOps, release: string): Promise<Manifest | null> {
  try {
    const dir = releaseDir(o.layout, release);
    const manifest = JSON.parse(await o.transport.readFile(`${dir}/manifest.json`)) as Manifest;
    if (manifest.release !== release) return null;
    return isCleanDiff(await o.verifyTree(dir, manifest)) ? manifest : null;
  } catch {
    return null;
  }
}

/**
 * Which releases retention removes on one instance to keep at most `keep` releases:
 * failed releases go first, then the oldest by last activation (never-activated ones count as
 * oldest). Never removed: `current`, the rollback target, anything in `protect` (mid-deploy).
 */
export function planPrune(info: InstanceReleases, keep: number, protect: string[]): string[] {
  const keepSet = new Set<string>([...protect]);
  if (info.current) keepSet.add(info.current);
  const target = succeededReleases(info.history).find((r) => r !== info.current && info.present.includes(r));
  if (target) keepSet.add(target);
  const lastActivation = new Map<string, number>();
  info.history.forEach((h, i) => {
    if (h.event === 'activate' || h.event === 'rollback') lastActivation.set(h.release, i);
  });
  const removable = info.present.filter((r) => !keepSet.has(r));
  const failed = removable.filter((r) => releaseState(info, r) === 'failed');
  const others = removable
    .filter((r) => !failed.includes(r))
    .sort((a, b) => (lastActivation.get(a) ?? -1) - (lastActivation.get(b) ?? -1) || (a < b ? -1 : 1));
  const excess = info.present.length - keep;
  if (excess <= 0) return [];
  return [...failed, ...others].slice(0, excess);
}

/** Remove releases (and their artifacts) on one instance. */
export async function pruneReleases(o: InstanceOps, releases: string[]): Promise<void> {
  for (const r of releases) {
    const dir = releaseDir(o.layout, r);
    // The artifact is named by digest; read it from the release's manifest before removing.
    const digest = await o.transport
      .readFile(`${dir}/manifest.json`)
      .then((t) => (JSON.parse(t) as Manifest).digest)
      .catch(() => null);
    const artifact = digest && /^[0-9a-f]{64}$/.test(digest) ? ` ${shq(`${o.layout.artifacts}/${digest}.tar.gz`)}` : '';
    await o.run(`rm -rf ${shq(dir)}${artifact}`);
  }
}

/** Prune every instance of the fleet; @returns what was removed per instance. */
export async function pruneFleet(fleet: Fleet, keep: number, protect: string[]): Promise<Map<string, string[]>> {
  const removed = new Map<string, string[]>();
  await fleet.each(async (o) => {
    const info = await readInstanceReleases(o);
    const plan = planPrune(info, keep, protect);
    await pruneReleases(o, plan);
    removed.set(o.name, plan);
  });
  return removed;
}

/** Releases and history of every instance of a fleet; unreachable instances are listed apart. */
export interface FleetReleases {
  infos: InstanceReleases[];
  unreachable: { instance: string; error: string }[];
}

/** Read `readInstanceReleases` on every instance (bounded parallelism); never throws for an instance. */
export async function readFleetReleases(fleet: Fleet): Promise<FleetReleases> {
  const read = await fleet.each((o) => readInstanceReleases(o));
  const out: FleetReleases = { infos: [], unreachable: [] };
  read.forEach((r, i) => {
    if (r.status === 'fulfilled') out.infos.push(r.value);
    else out.unreachable.push({ instance: fleet.ops[i]!.name, error: reasonOf(r) });
  });
  return out;
}
