/**
 * The one verdict on a fleet, for `lockstep status`, `lockstep drift` and the proxy's dashboard
 * (issue 11: "one verdict, computed by one function"). Pure: it judges what the caller read
 * (each instance's /version and health, the proxy's view, a rollout in progress) and reads nothing
 * itself. It sits in the bottom layer `verdict/`, which imports nothing, so both programs use it
 * (proxy/ never imports deployer/).
 *
 * The rule, first match wins:
 *   1. STALE        the caller could not read its sources now (the dashboard lost the proxy): the
 *                   picture is from an earlier time. Exit 3.
 *   2. UNKNOWN      no instance at all, or an instance whose serving state is not known. Exit 3.
 *   3. ROLLING OUT  a deploy, rollback or repair holds the lock (announced to the proxy, or a live
 *                   lock on an instance): `ROLLING OUT r2: 1 of 3 (holder)`. Mixed digests and
 *                   drained instances are what a rollout looks like, not drift. Exit 1.
 *   4. NOT IN PARITY instances answer with different digests, or a fleet-level problem the rows do
 *                   not show (out of rotation under a stale lock). Exit 1.
 *   5. DEGRADED     one digest, but some instance is not serving: its /version does not answer,
 *                   its health path fails, the proxy finds it unhealthy or does not have it. Exit 1.
 *   6. PARITY       every instance serves one digest. Exit 0.
 * A secondary source that could not be read (SSH, the proxy's admin API) is named in `notes`; it
 * turns PARITY's exit 0 into 3 (parity cannot be confirmed), while a problem already found keeps
 * its exit 1 (what was not read cannot undo it).
 * An instance drained or disabled in the proxy by hand (no deploy holds the lock) still counts as
 * serving its release: an operator may do so on purpose; it is named in `notes`.
 */

/** The proxy's admin state of an instance, as far as the verdict needs it. */
export type VerdictProxyState = 'enabled' | 'draining' | 'disabled' | 'absent';

/** One instance, as read by the caller. */
export interface VerdictInstance {
  name: string;
  /** Release and digest its /version reports; both null when nothing usable answered. */
  release: string | null;
  digest: string | null;
  /** Its health path answered 200 (null: not checked). */
  healthy: boolean | null;
  /** Why its /version gave nothing usable (connection refused, HTTP 500...), when it did not. */
  versionError?: string | null;
  /** The proxy's state for it; null when there is no proxy or the proxy could not be read. */
  proxyState?: VerdictProxyState | null;
  /** The proxy's own health checks (null: unknown). */
  proxyHealthy?: boolean | null;
  /** False when its serving state could not be determined at all (rule 2). Default true. */
  known?: boolean;
  /** Secondary sources that could not be read (`ssh unreachable: ...`): notes, and exit 3. */
  unread?: string[];
}

/** A rollout in progress: what the deployer announces to the proxy, or what a live lock says. */
export interface RolloutInProgress {
  /** The release being rolled out (or rolled back to). */
  release: string;
  /** Who holds the lock: `user@host` (pid...). */
  holder: string;
  /** Instances that serve `release` so far, and how many the rollout covers. */
  done: number;
  total: number;
  /** `deploy`, `rollback` or `repair`, when known. */
  operation?: string;
  /** What is happening now, e.g. `web-2: waiting for health and version gates`. */
  phase?: string;
}

export interface VerdictInput {
  instances: VerdictInstance[];
  rollout?: RolloutInProgress | null;
  /** Reasons the fleet is not in parity that the instance rows do not show (rule 4). */
  problems?: string[];
  /** Set when the whole picture is old: why, and since when (rule 1). */
  stale?: string | null;
}

export type VerdictState = 'parity' | 'rolling-out' | 'not-in-parity' | 'degraded' | 'unknown' | 'stale';

export interface FleetVerdict {
  state: VerdictState;
  /** One line for people, starting with the state in capitals: `PARITY: all 3 instances serve r2`. */
  headline: string;
  /** The common release and digest (parity and degraded), else null. */
  release: string | null;
  digest: string | null;
  /** Instances serving (rule 5's sense) and the total. */
  serving: number;
  total: number;
  /** Secondary facts: unread sources, instances drained by hand. */
  notes: string[];
  /** 0 parity, 1 not in parity / degraded / rolling out, 3 something could not be read. */
  exitCode: 0 | 1 | 3;
  rollout: RolloutInProgress | null;
}

const short = (digest: string | null): string => (digest === null ? '?' : digest.slice(0, 12));

/** Why an instance is not serving, or null when it is (rule 5). */
export function notServingReason(i: VerdictInstance): string | null {
  if (i.digest === null) return i.versionError ? `/version: ${i.versionError}` : '/version did not answer';
  if (i.healthy === false) return 'health check fails';
  if (i.proxyState === 'absent') return 'not in the proxy';
  if (i.proxyHealthy === false) return 'the proxy finds it unhealthy';
  return null;
}

/** `r2 on web-1, web-3; r1 on web-2`: instances grouped by digest, most common first. */
function groups(instances: VerdictInstance[]): string {
  const byDigest = new Map<string, { label: string; names: string[] }>();
  for (const i of instances) {
    if (i.digest === null) continue;
    const g = byDigest.get(i.digest) ?? { label: i.release ?? short(i.digest), names: [] };
    g.names.push(i.name);
    byDigest.set(i.digest, g);
  }
  return [...byDigest.values()]
    .sort((a, b) => b.names.length - a.names.length)
    .map((g) => `${g.label} on ${g.names.join(', ')}`)
    .join('; ');
}

/**
 * Judge a fleet by the rule above.
 * @param input what the caller read; instances in display order.
 * @returns the verdict: state, headline, exit code and notes. Never throws.
 */
export function fleetVerdict(input: VerdictInput): FleetVerdict {
  const v = judge(input);
  // A source that could not be read makes a PARITY answer incomplete (exit 3: it cannot be
  // confirmed). A problem already found stays exit 1: what was not read cannot undo it.
  const unread = input.instances.some((i) => (i.unread ?? []).length > 0);
  return unread && v.exitCode === 0 ? { ...v, exitCode: 3 } : v;
}

function judge(input: VerdictInput): FleetVerdict {
  const all = input.instances;
  const total = all.length;
  const rollout = input.rollout ?? null;
  const down = all.map((i) => ({ i, why: notServingReason(i) })).filter((d) => d.why !== null);
  const serving = total - down.length;
  const notes: string[] = [];
  for (const i of all) for (const u of i.unread ?? []) notes.push(`${i.name}: ${u}`);
  for (const i of all) if (i.proxyState === 'draining' || i.proxyState === 'disabled') notes.push(`${i.name} is ${i.proxyState} in the proxy`);
  const base = { serving, total, notes, rollout, release: null, digest: null };
  const downText = down.map((d) => `${d.i.name} (${d.why})`).join(', ');

  if (input.stale) return { ...base, state: 'stale', headline: `STALE: ${input.stale}`, exitCode: 3 };
  if (total === 0) return { ...base, state: 'unknown', headline: 'UNKNOWN: no instance to judge', exitCode: 3 };
  const unknown = all.filter((i) => i.known === false);
  if (unknown.length) return { ...base, state: 'unknown', headline: `UNKNOWN: cannot tell what ${unknown.map((i) => i.name).join(', ')} serve${unknown.length === 1 ? 's' : ''}`, exitCode: 3 };
  if (rollout) {
    const what = rollout.operation && rollout.operation !== 'deploy' ? ` (${rollout.operation})` : '';
    return {
      ...base,
      state: 'rolling-out',
      headline: `ROLLING OUT ${rollout.release}${what}: ${rollout.done} of ${rollout.total} (${rollout.holder})`,
      exitCode: 1,
    };
  }
  const digests = new Set(all.map((i) => i.digest).filter((d): d is string => d !== null));
  if (digests.size > 1 || input.problems?.length) {
    const parts = [digests.size > 1 ? groups(all) : '', ...(input.problems ?? []), down.length ? `not serving: ${downText}` : ''].filter(Boolean);
    return { ...base, state: 'not-in-parity', headline: `NOT IN PARITY: ${parts.join('; ')}`, exitCode: 1 };
  }
  const one = all.find((i) => i.digest !== null);
  const release = one?.release ?? null;
  const digest = one?.digest ?? null;
  if (down.length) {
    return {
      ...base,
      release,
      digest,
      state: 'degraded',
      headline: `DEGRADED: ${serving} of ${total} instance${total === 1 ? '' : 's'} serving${digest ? ` ${release ?? short(digest)}` : ''}; not serving: ${downText}`,
      exitCode: 1,
    };
  }
  return {
    ...base,
    release,
    digest,
    state: 'parity',
    headline: `PARITY: all ${total} instance${total === 1 ? '' : 's'} serve ${release ?? short(digest)}`,
    exitCode: 0,
  };
}
