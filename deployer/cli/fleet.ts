/**
 * `lockstep status`, `releases` and `history`: read-only views of the fleet.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.ts';
import { decideRollbackTarget, mergedHistory, readFleetReleases, releaseState } from '../fleet/releases.ts';
import { openFleet } from '../fleet/fleet.ts';
import { historyNote, shortSource } from '../fleet/history.ts';
import { fleetStatusReport } from '../fleet/status.ts';
import { announcedRollout, renderStatusTable } from './status-render.ts';
import { statusVerdict } from '../fleet/status-verdict.ts';
import { err, inventoryFrom, out, reportUnreachable, wantsJson, type CliResult } from './context.ts';
import { renderTable } from './table.ts';
import { instancesOption, mixedFleetLine, selectionFrom } from './instances.ts';

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
      // One verdict, by the same function as `drift` and the dashboard (verdict/fleet-verdict.ts).
      const verdict = statusVerdict(rows, inv.deploy.lock_ttl_ms, await announcedRollout(inv));
      const rollbackTarget = report.rollbackTarget ?? (report.instances.every((r) => r.reachable) ? null : undefined);
      const mixed = mixedFleetLine(rows);
      if (json) out(JSON.stringify({ verdict, instances: rows, selected: selected ?? null, mixed: mixed ?? null, rollback_target: rollbackTarget ?? null }, null, 2));
      else {
        out(renderStatusTable(rows));
        const proxyError = rows.find((r) => r.proxy?.error)?.proxy?.error;
        if (proxyError) err(`proxy: ${proxyError}`);
        out(`${verdict.headline} (exit ${verdict.exitCode})`);
        for (const n of verdict.notes) out(`  note: ${n}`);
        if (mixed) out(mixed);
        out(`rollback target: ${rollbackTarget ?? (rollbackTarget === null ? 'none (`lockstep rollback` would refuse)' : 'unknown (an instance could not be read)')}`);
      }
      result.exitCode = verdict.exitCode;
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
