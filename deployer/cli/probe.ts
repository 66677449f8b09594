/**
 * The rollout probe around a CLI operation (deploy, rollback, drift --repair): started before the
 * operation when the inventory has a proxy that answers and `deploy.probe.enabled` is true,
 * stopped when it ends (whatever way it ends), its figures printed, put in --json and recorded in
 * every instance's history as a `probe` entry. The probe itself is checks/rollout-probe.ts.
 */
import type { Inventory } from '../../config/inventory.ts';
import { proxyUrlOf } from '../checks/verify.ts';
import { probeFailed, renderProbeLine, startRolloutProbe, type ProbeFigures } from '../checks/rollout-probe.ts';
import { openFleet } from '../fleet/fleet.ts';

/** How long the check that the fleet serves a page before the operation may take, ms. */
const SERVING_CHECK_MS = 3_000;

/**
 * True when `url`/ answers 200 through the proxy within SERVING_CHECK_MS, on any of `attempts`
 * cookie-less requests: the balancer spreads them over the instances, so one instance that does
 * not serve (the very fault the probe is there to report) does not make the fleet look unserved.
 */
async function servesPage(url: string, attempts: number): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    try {
      const res = await fetch(`${url}/`, { signal: AbortSignal.timeout(SERVING_CHECK_MS) });
      await res.body?.cancel();
      if (res.status === 200) return true;
    } catch {
      // try the next request: another instance may answer
    }
  }
  return false;
}

/**
 * Run `operation` with the probe going through the proxy.
 * @param proxyUp true when the proxy's admin API answered (proxyControlFor returned a control):
 *   without a running proxy there is nothing users could reach, so nothing is probed.
 * @param note told why the probe was skipped: a fleet that served no page before the operation
 *   (a first deploy) has no users to protect, and every request would count as failed.
 * @returns the operation's result and the figures (null when the probe was off or skipped).
 * @throws whatever `operation` throws, after the probe was stopped.
 */
export async function withRolloutProbe<T>(
  inventory: Inventory,
  proxyUp: boolean,
  operation: () => Promise<T>,
  note: (line: string) => void = () => {},
): Promise<{ result: T; probe: ProbeFigures | null }> {
  const url = proxyUrlOf(inventory);
  let wanted = Boolean(url && proxyUp && inventory.deploy.probe.enabled);
  if (wanted && !(await servesPage(url!, inventory.instances.length + 1))) {
    note('rollout probe skipped: the fleet served no page through the proxy before this operation (a first deploy has no users to watch)');
    wanted = false;
  }
  const handle = wanted ? startRolloutProbe(url!, inventory) : null;
  try {
    const result = await operation();
    return { result, probe: handle ? await handle.stop() : null };
  } finally {
    await handle?.stop();
  }
}

/**
 * The human lines of the figures: the summary line, then the first failures.
 * @param what `deploy`, `rollback` or `repair`.
 */
export function renderProbeText(f: ProbeFigures, what: string): string {
  const lines = [renderProbeLine(f, what)];
  for (const x of f.failures) lines.push(`  - ${x.kind} ${x.path}: ${x.error}`);
  if (f.failed > f.failures.length) lines.push(`  - ... and ${f.failed - f.failures.length} more failed requests`);
  return lines.join('\n');
}

/**
 * Record the figures in every instance's history as a `probe` entry (best effort: an instance
 * that cannot be written is reported on `progress`, the operation's outcome stands).
 * @param release the release the operation was about (id and digest; empty when none was known).
 */
export async function recordProbe(
  inventory: Inventory,
  f: ProbeFigures,
  what: string,
  release: { release: string; digest: string },
  progress: (instance: string, line: string) => void,
): Promise<void> {
  const fleet = openFleet(inventory);
  try {
    const results = await fleet.each((o) =>
      o.appendHistory({ event: 'probe', release: release.release, digest: release.digest, previous: null, message: renderProbeLine(f, what), probe: { operation: what, ...f } }),
    );
    results.forEach((r, i) => {
      if (r.status === 'rejected') progress(fleet.ops[i]!.name, `probe figures not recorded in the history: ${(r.reason as Error)?.message ?? String(r.reason)}`);
    });
  } finally {
    await fleet.close();
  }
}

export { probeFailed };
