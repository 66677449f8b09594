/**
 * Releases across the fleet: which release is in which state on which instance, which one a
 * rollback would go to (retention is in retention.ts). Judged by the history we record, never by directory
 * names or mtimes (Capistrano's "previous = second newest dir" differs per host after a failure).
 */
import type { HistoryEntry, InstanceOps } from './instance.ts';
import { reasonOf, type Fleet } from './fleet.ts';
import * as cmd from '../remote/commands.ts';
import { releaseDir } from '../remote/layout.ts';
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
