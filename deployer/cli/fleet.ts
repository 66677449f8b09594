/**
 * `lockstep status`, `releases` and `history`: read-only views of the fleet.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.ts';
import { decideRollbackTarget, mergedHistory, readFleetReleases, releaseState } from '../fleet/releases.ts';
import { openFleet } from '../fleet/fleet.ts';
import { historyNote, shortSource } from '../fleet/history.ts';
import { fleetStatusReport, renderProxyView } from '../fleet/status.ts';
import { outOfRotation, rotationVerdict } from '../fleet/rotation.ts';
import { err, inventoryFrom, out, reportUnreachable, wantsJson, type CliResult } from './context.ts';
import { renderTable } from './table.ts';
import { instancesOption, mixedFleetLine, selectionFrom } from './instances.ts';

/** One line saying whether the fleet is in parity, and why not (the reason for exit 1 or 3). */
function statusVerdict(rows: { instance: string; reachable: boolean; running: { release: string | null; digest: string | null } | null }[]): string {
  const unreachable = rows.filter((r) => !r.reachable).map((r) => r.instance);
  if (unreachable.length) return `UNKNOWN: cannot reach ${unreachable.join(', ')} (exit 3)`;
  const down = rows.filter((r) => !r.running?.digest).map((r) => r.instance);
  const releases = new Set(rows.map((r) => r.running?.release ?? null));
  if (down.length === 0 && releases.size === 1) return `PARITY: all ${rows.length} instances run ${[...releases][0]}`;
  const parts: string[] = [];
  if (down.length) parts.push(`no app answering on ${down.join(', ')}`);
  if (new Set(rows.filter((r) => r.running?.digest).map((r) => r.running!.digest)).size > 1) parts.push('instances run different releases');
  return `NOT IN PARITY: ${parts.join('; ')} (exit 1; \`lockstep drift\` names every difference)`;
}

/** Register these verbs on `program`; their actions set `result.exitCode`. */
export function registerFleetVerbs(program: Command, result: CliResult): void {
  program
    .command('status')
    .description('one row per instance: release on disk, release running, health, proxy view, lock')
    .addOption(instancesOption('rows and verdict for these; the rollback target is the whole fleet\'s'))
    .action(async (o: { instances?: string[] }, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const selected = selectionFrom(o, inv);
      const report = await fleetStatusReport(inv);
      const rows = selected ? report.instances.filter((r) => selected.includes(r.instance)) : report.instances;
      const idle = outOfRotation(rows, inv.deploy.lock_ttl_ms);
      if (json) out(JSON.stringify(rows, null, 2));
      else {
        out(
          renderTable(
            ['instance', 'reachable', 'current (disk)', 'running (/version)', 'health', 'proxy', 'lock'],
            rows.map((r) => [
              r.instance,
              r.reachable ? 'yes' : `NO${r.error ? `: ${r.error}` : ''}`,
              r.current ? `${r.current.release}` : '-',
              r.running ? `${r.running.release ?? '?'}${r.current && r.running.digest !== r.current.digest ? ' (DIFFERS)' : ''}` : 'not running',
              r.healthy ? 'ok' : 'DOWN',
              renderProxyView(r.proxy),
              r.lock ? `held by ${String(r.lock.user)}@${String(r.lock.machine)} since ${String(r.lock.time)}` : '-',
            ]),
          ),
        );
      }
      const proxyError = rows.find((r) => r.proxy?.error)?.proxy?.error;
      if (proxyError && !json) err(`proxy: ${proxyError}`);
      const digests = new Set(rows.map((r) => r.running?.digest ?? null));
      result.exitCode = rows.some((r) => !r.reachable) ? 3 : digests.size === 1 && !digests.has(null) && idle.length === 0 ? 0 : 1;
      if (!json) {
        // Out of rotation with no live deploy to account for it: never PARITY (issue 12, item 6).
        const verdict = statusVerdict(rows);
        out(idle.length === 0 || result.exitCode === 3 ? verdict : verdict.startsWith('PARITY') ? rotationVerdict(idle) : `${verdict}\n${rotationVerdict(idle)}`);
        const mixed = mixedFleetLine(rows);
        if (mixed) out(mixed);
        out(`rollback target: ${report.rollbackTarget ?? (rows.every((r) => r.reachable) ? 'none (`lockstep rollback` would refuse)' : 'unknown (an instance could not be read)')}`);
      }
    });


  program
    .command('releases')
    .description('every release on the fleet with its state on each instance and the rollback candidates')
    .action(async (_o, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const fleet = openFleet(inv);
      try {
        const { infos, unreachable } = await readFleetReleases(fleet);
        const all = [...new Set(infos.flatMap((i) => i.present))].sort().reverse();
        const { candidates, target } = decideRollbackTarget(infos);
        if (json) {
          out(JSON.stringify({ releases: all.map((r) => ({ release: r, states: Object.fromEntries(infos.map((i) => [i.instance, releaseState(i, r)])), rollback_candidate: candidates.includes(r) })), rollback_target: target }, null, 2));
        } else {
          out(renderTable(['release', ...infos.map((i) => i.instance), 'rollback'], all.map((r) => [r, ...infos.map((i) => releaseState(i, r)), r === target ? 'target' : candidates.includes(r) ? 'candidate' : ''])));
        }
        result.exitCode = reportUnreachable(unreachable);
      } finally {
        await fleet.close();
      }
    });

  program
    .command('history')
    .description('activations, rollbacks, failures (hooks too) and lock breaks across the fleet, newest first: who, from where, source commit, message, outcome')
    .option('-n, --limit <count>', 'show at most this many entries', '50')
    .action(async (o: { limit: string }, cmd: Command) => {
      if (!/^[1-9]\d*$/.test(o.limit)) throw new ConfigError(`-n/--limit: "${o.limit}" is not a positive whole number of entries (e.g. -n 20)`, { field: '--limit' });
      const limit = Number(o.limit);
      const json = wantsJson(cmd);
      const fleet = openFleet(inventoryFrom(cmd));
      try {
        const { infos, unreachable } = await readFleetReleases(fleet);
        const entries = mergedHistory(infos).slice(0, limit);
        if (json) out(JSON.stringify(entries, null, 2));
        else {
          out(
            renderTable(
              ['time', 'instance', 'operation', 'event', 'outcome', 'release', 'previous', 'source', 'by', 'note'],
              entries.map((h) => [h.time, h.instance, h.operation ?? '-', h.event, h.outcome ?? (h.event === 'failed' ? 'failed' : 'ok'), h.release, h.previous ?? '-', shortSource(h.source), `${h.user}@${h.machine}`, historyNote(h)]),
            ),
          );
        }
        result.exitCode = reportUnreachable(unreachable);
      } finally {
        await fleet.close();
      }
    });
}
