/**
 * The human text of a drift report (`lockstep drift` without --json): the expected release,
 * one block per instance naming each drifted item, the proxy's own items, and a summary line.
 */
import { short } from './compare.ts';
import type { DriftReport, InstanceDrift } from './types.ts';

/**
 * Human text of a drift report: a headline with the expected release, one block per instance
 * naming each drifted item, the proxy's own items, and a one-line summary.
 */
export function renderDriftText(r: DriftReport): string {
  const lines: string[] = [
    `expected ${r.expected.release} (digest ${short(r.expected.digest)}, ${r.expected.from === 'history' ? 'newest activation in the history' : 'named'})` +
      (r.rollbackTarget ? `; rollback target ${r.rollbackTarget}` : ''),
  ];
  if (r.verdict) lines.push(`fleet: ${r.verdict.headline}`);
  if (r.configFingerprint) lines.push(`config fingerprint of the fleet: ${r.configFingerprint.slice(0, 19)}`);
  if (r.lockHeld) lines.push('NOTE: a deploy holds the lock on some instance: a rollout may be in progress');
  for (const i of r.instances) {
    if (i.status === 'unchecked') lines.push(`${i.instance}: NOT CHECKED: ${i.error}`);
    else if (i.status === 'ok') lines.push(`${i.instance}: ok`);
    else {
      lines.push(`${i.instance}: DRIFT (${i.items.length} item${i.items.length === 1 ? '' : 's'})`);
      for (const item of i.items) lines.push(`  - ${item.kind}: ${item.message}`);
    }
  }
  if (r.proxy.status === 'unchecked') lines.push(`proxy: NOT CHECKED: ${r.proxy.error}`);
  for (const item of r.fleet) lines.push(`proxy: DRIFT ${item.kind}: ${item.message}`);
  const count = (s: InstanceDrift['status']) => r.instances.filter((i) => i.status === s).length;
  lines.push(
    `${r.exitCode === 0 ? 'no drift' : r.exitCode === 1 ? 'DRIFT' : 'INCOMPLETE'}: instances ${count('ok')} ok, ${count('drift')} drifted, ${count('unchecked')} not checked` +
      `; proxy ${r.proxy.status === 'unchecked' ? 'NOT CHECKED' : r.fleet.length ? `${r.fleet.length} item(s) drifted` : 'ok'} (${r.durationMs} ms)`,
  );
  return lines.join('\n');
}
