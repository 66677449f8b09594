/**
 * `lockstep drift [--repair]`: compare every instance with the expected release, and repair.
 */
import type { Command } from 'commander';
import { proxyControlFor } from '../balancer/control.ts';
import { renderReportTable } from '../checks/index.ts';
import { renderRepairText, repairDrift } from '../drift/repair.ts';
import { renderDriftText } from '../drift/render.ts';
import { scanDrift } from '../drift/scan.ts';
import { probeFailed, recordProbe, renderProbeText, withRolloutProbe } from './probe.ts';
import { instancesOption, selectionFrom } from './instances.ts';
import { inventoryFrom, out, printPhaseSummary, progressPrinter, wantsJson, withInterrupts, type CliResult } from './context.ts';

/** Register these verbs on `program`; their actions set `result.exitCode`. */
export function registerDriftVerb(program: Command, result: CliResult): void {
  program
    .command('drift')
    .description('compare every instance with the expected release (files hashed on the host, process, current, rollback target, proxy)')
    .option('-r, --release <id>', 'expected release (id, "latest" or manifest path); default: the last one activated')
    .option('-q, --quiet', 'print nothing when there is no drift (for cron)')
    .option('--repair', 'put drifted instances back on the expected release, then verify')
    .option('-m, --message <text>', 'with --repair: note recorded with the lock and history')
    .option('--no-proxy', 'repair without the inventory\'s proxy (e.g. it is down): instances restart WITHOUT draining')
    .addOption(instancesOption('report and repair these; the expected release is still the whole fleet\'s'))
    .action(async (o: { release?: string; quiet?: boolean; repair?: boolean; proxy: boolean; message?: string; instances?: string[] }, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const scanOptions = { release: o.release, instances: selectionFrom(o, inv) };
      const scan = await scanDrift(inv, scanOptions);
      if (!o.repair) {
        if (!(o.quiet && scan.report.exitCode === 0)) out(json ? JSON.stringify(scan.report, null, 2) : renderDriftText(scan.report));
        result.exitCode = scan.report.exitCode;
        return;
      }
      if (!json && !(o.quiet && scan.report.exitCode === 0)) out(renderDriftText(scan.report));
      const proxy = scan.report.exitCode === 0 ? undefined : await proxyControlFor(inv, progressPrinter(o.quiet), { noProxy: !o.proxy });
      const { result: r, probe } = await withRolloutProbe(inv, proxy !== undefined, () =>
        withInterrupts(
          (signal) => repairDrift(inv, scan, { scanOptions, proxy, progress: progressPrinter(o.quiet), signal, message: o.message }),
          (x) => `${x.instances.filter((i) => i.state === 'repaired').length} of ${x.instances.length} drifted instances repaired; drift after: exit ${x.after?.exitCode ?? '?'}`,
        ),
        (l) => progressPrinter(o.quiet)('probe', l),
      );
      if (probe) await recordProbe(inv, probe, 'repair', scan.report.expected, progressPrinter(o.quiet));
      printPhaseSummary(o.quiet);
      if (json) out(JSON.stringify({ ...r, probe }, null, 2));
      else if (scan.report.exitCode !== 0) out(`${renderRepairText(r, (v) => renderReportTable(v.reports), renderDriftText)}${probe ? `\n${renderProbeText(probe, 'repair')}` : ''}`);
      result.exitCode = r.exitCode === 0 && probe && probeFailed(probe) ? 1 : r.exitCode;
    });
}
