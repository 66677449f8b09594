/**
 * `lockstep build`, `deploy`, `verify` and `rollback`: the verbs that make and move releases.
 */
import type { Command } from 'commander';
import { buildRelease } from '../build/build.ts';
import { loadLocalRelease } from '../build/release-source.ts';
import { proxyControlFor } from '../balancer/control.ts';
import { renderReportJson, renderReportTable } from '../checks/index.ts';
import { verifyFleet } from '../checks/verify.ts';
import { deploy, type DeployReport } from '../rollout/deploy.ts';
import { rollback } from '../rollout/rollback.ts';
import { err, inventoryFrom, out, parseDuration, printPhaseSummary, progressPrinter, unlessInterrupted, wantsJson, withInterrupts, type CliResult } from './context.ts';
import { renderDeployReportText } from './report-text.ts';
import { probeFailed, recordProbe, renderProbeText, withRolloutProbe } from './probe.ts';
import { renderTable } from './table.ts';
import { instancesOption, partialWarning, selectionFrom } from './instances.ts';

/** The dry-run plan as a table with its batches. */
function renderPlan(release: string, plan: NonNullable<DeployReport['plan']>): string {
  const rows = plan.instances.map((i) => [i.instance, i.current ?? '-', i.upload ? 'upload' : 'skip (on host)', i.unpack ? 'unpack + verify' : 'verify existing', i.activate ? `activate ${release}` : 'unchanged']);
  return [
    `dry run: deploy ${release}; nothing was changed`,
    renderTable(['instance', 'current', 'artifact', 'release dir', 'activation'], rows),
    plan.batches.length ? `batches: ${plan.batches.map((b, i) => `${i + 1}) ${b.join(', ')}`).join('  ')}` : 'batches: none (every instance already serves this release)',
  ].join('\n');
}

/** Register these verbs on `program`; their actions set `result.exitCode`. */
export function registerReleaseVerbs(program: Command, result: CliResult): void {
  program
    .command('build')
    .description('build the app once into a reproducible artifact with a checksum manifest')
    .action(async (_o, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const r = await buildRelease(inv, { onProgress: (l) => err(l) });
      if (json) {
        out(JSON.stringify({ release: r.release, digest: r.digest, artifact: r.artifact, manifest: r.manifestFile, files: r.files, bytes: r.bytes, artifact_bytes: r.artifactBytes, source: r.manifest.source }, null, 2));
      } else {
        out(renderTable(['release', 'digest', 'files', 'bytes', 'artifact'], [[r.release, r.digest, r.files, r.bytes, `${r.artifact} (${r.artifactBytes} B)`]]));
      }
    });

  program
    .command('deploy')
    .description('push the artifact to every instance, verify it on each host, roll it out through the proxy')
    .option('-r, --release <id>', 'deploy an already-built release (id, "latest" or manifest path) instead of building')
    .option('-m, --message <text>', 'note recorded with the lock and history')
    .option('--no-verify', 'skip the post-deploy parity and session isolation checks')
    .option('--dry-run', 'preflight, then print the plan (batches, uploads, activations); change nothing')
    .option('--wait <duration>', 'wait this long for a held lock (e.g. 30s, 5m) instead of failing at once')
    .option('--no-proxy', 'roll out without the inventory\'s proxy (e.g. it is down): instances restart WITHOUT draining')
    .addOption(instancesOption('activate only these; the lock and the upload still cover the whole fleet'))
    .action(async (o: { release?: string; message?: string; verify: boolean; dryRun?: boolean; wait?: string; proxy: boolean; instances?: string[] }, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const selected = selectionFrom(o, inv);
      const lockWaitMs = parseDuration(o.wait, '--wait');
      // Preflight of the proxy, dry run included: a proxy in the inventory that cannot be reached stops here.
      const proxy = await proxyControlFor(inv, progressPrinter(), { noProxy: !o.proxy });
      const done = await withInterrupts(
        async (signal) => {
          // The probe watches the rollout itself (not the verification after it).
          const { result: r, probe } = await withRolloutProbe(inv, proxy !== undefined && !o.dryRun, () =>
            deploy(inv, { release: o.release, message: o.message, progress: progressPrinter(), proxy: o.dryRun ? undefined : proxy, signal, dryRun: o.dryRun, lockWaitMs, instances: selected }),
            (l) => progressPrinter()('probe', l),
          );
          if (r.plan) return { r, v: undefined, probe, state: r.state, verifyInterrupted: false };
          if (probe) await recordProbe(inv, probe, 'deploy', r, progressPrinter());
          let v: Awaited<ReturnType<typeof verifyFleet>> | undefined;
          if (r.ok && o.verify && !signal.aborted) {
            progressPrinter()('verify', 'post-deploy verification: version parity and session isolation');
            // A partial deploy leaves a mixed fleet on purpose: parity is checked on the activated
            // instances directly (the proxy balances over both releases), without the session checks.
            const checked = selected ? { ...inv, proxy: undefined, instances: inv.instances.filter((i) => selected.includes(i.name)) } : inv;
            v = await unlessInterrupted(verifyFleet(checked, { expected: { release: r.release, digest: r.digest }, parityOnly: Boolean(selected) }), signal);
          }
          const verifyInterrupted = r.ok && o.verify && v === undefined;
          return { r, v, probe, state: verifyInterrupted ? `${r.state}; the post-deploy verification did not run to the end (run \`lockstep verify\`)` : r.state, verifyInterrupted };
        },
        (d) => d.state,
      );
      const { r, v, probe } = done;
      printPhaseSummary();
      if (r.plan) {
        out(json ? JSON.stringify(r, null, 2) : renderPlan(r.release, r.plan));
        return;
      }
      const mixed = partialWarning('deploy', selected, inv, r.state, r.release);
      if (mixed) err(mixed);
      if (json) out(JSON.stringify({ ...r, selected: selected ?? null, mixed: mixed !== null, verification: v ?? null, probe }, null, 2));
      else {
        out(renderDeployReportText(r));
        if (mixed) out(mixed);
        if (probe) out(renderProbeText(probe, 'deploy'));
        if (v) out(`\n${renderReportTable(v.reports)}`);
      }
      result.exitCode = !r.ok || done.verifyInterrupted ? 3 : (v && !v.ok) || (probe && probeFailed(probe)) ? 1 : 0;
    });

  program
    .command('verify')
    .description('check version parity (direct, through the proxy, on disk) and session isolation')
    .option('-r, --release <id>', 'expected release (id, "latest" or manifest path); default: the last one activated')
    .option('--parity-only', 'skip the session isolation checks')
    .action(async (o: { release?: string; parityOnly?: boolean }, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const expected = o.release ? (({ manifest }) => ({ release: manifest.release, digest: manifest.digest }))(loadLocalRelease(inv, o.release)) : undefined;
      const v = await verifyFleet(inv, { expected, parityOnly: o.parityOnly });
      out(json ? renderReportJson(v.reports) : `expected ${v.expected.release} (digest ${v.expected.digest.slice(0, 12)})\n${renderReportTable(v.reports)}`);
      result.exitCode = v.ok ? 0 : 1;
    });

  program
    .command('rollback')
    .description('roll the fleet back to a release every instance has (no build, no upload)')
    .option('--to <release>', 'release id to roll back to (default: newest earlier good release present everywhere)')
    .option('--wait <duration>', 'wait this long for a held lock (e.g. 30s, 5m)')
    .option('-m, --message <text>', 'note recorded with the lock and history')
    .option('--no-proxy', 'roll back without the inventory\'s proxy (e.g. it is down): instances restart WITHOUT draining')
    .addOption(instancesOption('roll back only these; the lock and the target decision still cover the whole fleet'))
    .action(async (o: { to?: string; wait?: string; proxy: boolean; message?: string; instances?: string[] }, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const selected = selectionFrom(o, inv);
      const lockWaitMs = parseDuration(o.wait, '--wait');
      const proxy = await proxyControlFor(inv, progressPrinter(), { noProxy: !o.proxy });
      const { result: r, probe } = await withRolloutProbe(inv, proxy !== undefined, () =>
        withInterrupts((signal) => rollback(inv, { to: o.to, message: o.message, progress: progressPrinter(), proxy, signal, lockWaitMs, instances: selected }), (x) => x.state),
        (l) => progressPrinter()('probe', l),
      );
      if (probe) await recordProbe(inv, probe, 'rollback', r, progressPrinter());
      printPhaseSummary();
      const mixed = partialWarning('rollback', selected, inv, r.state, r.release);
      if (mixed) err(mixed);
      out(json ? JSON.stringify({ ...r, selected: selected ?? null, mixed: mixed !== null, probe }, null, 2) : `${renderDeployReportText(r, 'rollback')}${probe ? `\n${renderProbeText(probe, 'rollback')}` : ''}${mixed ? `\n${mixed}` : ''}`);
      result.exitCode = !r.ok ? 3 : probe && probeFailed(probe) ? 1 : 0;
    });
}
