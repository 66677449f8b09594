/**
 * The `lockstep` command line. Parses arguments (commander), runs one verb, and is the one
 * place that turns typed errors into exit codes: 0 ok, 1 a check found a problem, 2 usage or
 * configuration error, 3 an operation failed part-way (DESIGN.md, "CLI conventions").
 */
import { Command, CommanderError, Option } from 'commander';
import pino, { type Logger } from 'pino';
import { resolve } from 'node:path';
import { buildRelease } from '../build/build.ts';
import { deploy, type DeployReport } from '../rollout/deploy.ts';
import ms, { type StringValue } from 'ms';
import { breakLocks, lockStatus, type LockInfo } from '../fleet/lock.ts';
import { ConfigError, LockstepError } from '../../config/errors.ts';
import { loadInventory, type Inventory } from '../../config/inventory.ts';
import { renderTable } from './table.ts';
import { fleetStatus, renderProxyView } from '../fleet/status.ts';
import { renderDriftText } from '../drift/render.ts';
import { scanDrift } from '../drift/scan.ts';
import { renderRepairText, repairDrift } from '../drift/repair.ts';
import { renderDeployReportText } from './report-text.ts';
import { runDemo } from './demo.ts';
import { rollback } from '../rollout/rollback.ts';
import { verifyFleet } from '../checks/verify.ts';
import { renderReportJson, renderReportTable } from '../checks/index.ts';
import { loadLocalRelease } from '../build/release-source.ts';
import { trustHosts } from '../transport/trust.ts';
import { proxyControlFor } from '../balancer/control.ts';
import { runProxyCommand } from '../../proxy/command.ts';
import { openFleet, setTransportLogger } from '../fleet/fleet.ts';
import { mergedHistory, readFleetReleases, releaseState, decideRollbackTarget } from '../fleet/releases.ts';

interface GlobalOptions {
  inventory: string;
  json?: boolean;
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

function err(line: string): void {
  process.stderr.write(`${line}\n`);
}

let logger: Logger | undefined;

/**
 * Per-instance progress on stderr, so stdout stays clean for --json and tables. With
 * --log-level (or LOCKSTEP_LOG) the same events are pino JSON lines instead.
 */
export function progressPrinter(quiet = false): (instance: string, line: string) => void {
  return (instance, line) => {
    if (logger) logger.info({ instance }, line);
    else if (!quiet) err(`[${instance}] ${line}`);
  };
}

function inventoryFrom(cmd: Command): Inventory {
  const opts = cmd.optsWithGlobals() as GlobalOptions;
  return loadInventory(resolve(opts.inventory));
}

/**
 * Parse a duration like "30s", "5m", "1500ms" or a bare number of ms (the `ms` package).
 * @returns ms, or undefined when `value` is undefined. @throws ConfigError naming the option.
 */
export function parseDuration(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : ms(value as StringValue);
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) throw new ConfigError(`${option}: "${value}" is not a duration (use e.g. 30s, 5m, 1500ms)`, { field: option });
  return n;
}

/**
 * Run an operation with Ctrl-C/SIGTERM turned into an abort: the first signal lets the step in
 * progress finish and the rollout roll back and release its lock; a second one exits at once.
 */
async function withInterrupts<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted) {
      err(`lockstep: second ${sig}: exiting now; run \`lockstep status\` and \`lockstep lock status\` to see the state left behind`);
      process.exit(130);
    }
    err(`lockstep: ${sig} received: finishing the step in progress, then rolling back what was switched and releasing the lock (send again to exit at once)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function renderPlan(release: string, plan: NonNullable<DeployReport['plan']>): string {
  const rows = plan.instances.map((i) => [i.instance, i.current ?? '-', i.upload ? 'upload' : 'skip (on host)', i.unpack ? 'unpack + verify' : 'verify existing', i.activate ? `activate ${release}` : 'unchanged']);
  return [
    `dry run: deploy ${release}; nothing was changed`,
    renderTable(['instance', 'current', 'artifact', 'release dir', 'activation'], rows),
    plan.batches.length ? `batches: ${plan.batches.map((b, i) => `${i + 1}) ${b.join(', ')}`).join('  ')}` : 'batches: none (every instance already serves this release)',
  ].join('\n');
}

function renderLocks(rows: LockInfo[]): string {
  return renderTable(
    ['instance', 'lock', 'holder', 'since', 'release', 'status'],
    rows.map((r) => [
      r.instance,
      r.error ? 'UNREACHABLE' : r.held ? 'held' : 'free',
      r.holder ? `${String(r.holder.user ?? '?')}@${String(r.holder.machine ?? '?')} pid ${String(r.holder.pid ?? '?')}` : '-',
      r.holder ? String(r.holder.time ?? '?') : '-',
      r.holder ? String(r.holder.release ?? '?') : '-',
      r.error ?? (r.held ? `${r.stale ? 'STALE' : 'live'}: ${r.reason}${'broken' in r && (r as { broken: boolean }).broken ? ' (broken)' : ''}` : ''),
    ]),
  );
}

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

/** Print one line per unreachable instance. @returns the exit code: 3 when any, else 0. */
function reportUnreachable(unreachable: { instance: string; error: string }[]): number {
  for (const u of unreachable) err(`${u.instance}: unreachable: ${u.error}`);
  return unreachable.length ? 3 : 0;
}

/** Build the commander program. Actions set `exitCode` through the returned holder. */
export function buildProgram(result: { exitCode: number }): Command {
  const program = new Command('lockstep')
    .description('Build once, deploy the identical artifact everywhere, prove version parity and session isolation.')
    .option('-i, --inventory <file>', 'inventory file', 'inventory.yaml')
    .option('--json', 'machine-readable output')
    .addOption(new Option('--log-level <level>', 'JSON logs (pino) on stderr instead of progress lines').choices(['trace', 'debug', 'info', 'warn', 'error']).env('LOCKSTEP_LOG'))
    .exitOverride()
    .configureHelp({ showGlobalOptions: true })
    .hook('preAction', (cmd) => {
      const level = (cmd.opts() as { logLevel?: string }).logLevel;
      if (level) {
        logger = pino({ level, base: { app: 'lockstep' } }, pino.destination(2));
        setTransportLogger(logger);
      }
    })
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('build')
    .description('build the app once into a reproducible artifact with a checksum manifest')
    .action(async (_o, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
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
    .action(async (o: { release?: string; message?: string; verify: boolean; dryRun?: boolean; wait?: string }, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const inv = inventoryFrom(cmd);
      const proxy = o.dryRun ? undefined : await proxyControlFor(inv, progressPrinter());
      const r = await withInterrupts((signal) =>
        deploy(inv, { release: o.release, message: o.message, progress: progressPrinter(), proxy, signal, dryRun: o.dryRun, lockWaitMs: parseDuration(o.wait, '--wait') }),
      );
      if (r.plan) {
        out(json ? JSON.stringify(r, null, 2) : renderPlan(r.release, r.plan));
        return;
      }
      const v = r.ok && o.verify ? await verifyFleet(inv, { expected: { release: r.release, digest: r.digest } }) : undefined;
      if (json) out(JSON.stringify({ ...r, verification: v ?? null }, null, 2));
      else {
        out(renderDeployReportText(r));
        if (v) out(`\n${renderReportTable(v.reports)}`);
      }
      result.exitCode = !r.ok ? 3 : v && !v.ok ? 1 : 0;
    });

  program
    .command('verify')
    .description('check version parity (direct, through the proxy, on disk) and session isolation')
    .option('-r, --release <id>', 'expected release (id, "latest" or manifest path); default: the last one activated')
    .option('--parity-only', 'skip the session isolation checks')
    .action(async (o: { release?: string; parityOnly?: boolean }, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const inv = inventoryFrom(cmd);
      const expected = o.release ? (({ manifest }) => ({ release: manifest.release, digest: manifest.digest }))(loadLocalRelease(inv, o.release)) : undefined;
      const v = await verifyFleet(inv, { expected, parityOnly: o.parityOnly });
      out(json ? renderReportJson(v.reports) : `expected ${v.expected.release} (digest ${v.expected.digest.slice(0, 12)})\n${renderReportTable(v.reports)}`);
      result.exitCode = v.ok ? 0 : 1;
    });

  program
    .command('proxy')
    .description('run the load balancer for the inventory (foreground; SIGTERM/SIGINT stop it gracefully)')
    .action(async (_o, cmd: Command) => {
      await runProxyCommand(inventoryFrom(cmd));
    });

  program
    .command('demo')
    .description('start a local fleet and the proxy, build, deploy, verify, print the URL')
    .option('--once', 'stop everything after the verification and exit with its status (default when CI is set)')
    .action(async (o: { once?: boolean }, cmd: Command) => {
      const inv = inventoryFrom(cmd);
      result.exitCode = await runDemo(inv, { once: Boolean(o.once || process.env.CI), print: out, progress: progressPrinter() });
    });

  const lock = program.command('lock').description('the deploy lock on each instance');
  lock
    .command('status')
    .description('who holds the lock on each instance, and whether it is stale')
    .action(async (_o, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const rows = await lockStatus(inventoryFrom(cmd));
      if (json) out(JSON.stringify(rows, null, 2));
      else out(renderLocks(rows));
      result.exitCode = rows.some((r) => r.error) ? 3 : rows.some((r) => r.held) ? 1 : 0;
    });
  lock
    .command('release')
    .description('break STALE locks (older than deploy.lock_ttl_ms, or whose holder process is gone); live locks are never broken')
    .option('--force', 'required: actually break the stale locks')
    .action(async (o: { force?: boolean }, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const rows = await breakLocks(inventoryFrom(cmd), { force: Boolean(o.force) });
      if (json) out(JSON.stringify(rows, null, 2));
      else out(renderLocks(rows));
      const live = rows.filter((r) => r.held && !r.stale);
      const staleLeft = rows.filter((r) => r.held && r.stale && !r.broken);
      if (staleLeft.length) err(`stale locks on ${staleLeft.map((r) => r.instance).join(', ')}: run again with --force to break them`);
      if (live.length) err(`live locks on ${live.map((r) => r.instance).join(', ')} were left alone: a deploy is running (or wait for deploy.lock_ttl_ms)`);
      result.exitCode = rows.some((r) => r.error) || live.length || staleLeft.length ? 3 : 0;
    });

  const hosts = program.command('hosts').description('SSH host keys');
  hosts
    .command('trust')
    .description('record the host keys of instances not yet in known_hosts (a changed key is never replaced)')
    .option('--instance <names...>', 'only these instances')
    .action(async (o: { instance?: string[] }, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const inv = inventoryFrom(cmd);
      const rows = await trustHosts(inv, { instances: o.instance });
      if (json) out(JSON.stringify(rows, null, 2));
      else {
        out(renderTable(['instance', 'host', 'fingerprint', 'status'], rows.map((r) => [r.instance, `${r.host}:${r.port}`, r.fingerprint ?? '-', r.status])));
        for (const r of rows) {
          if (r.status === 'changed-refused') err(`${r.instance}: key CHANGED: known_hosts has ${(r.expected ?? []).join(', ')}; the host presented ${r.fingerprint}. Not replaced: if the host was really re-installed, remove its line from ${inv.ssh.knownHosts} and run this again.`);
          if (r.status === 'unreachable') err(`${r.instance}: unreachable: ${r.reason ?? 'no answer'}`);
        }
      }
      result.exitCode = rows.some((r) => r.status !== 'added' && r.status !== 'already-known') ? 3 : 0;
    });

  program
    .command('rollback')
    .description('roll the fleet back to a release every instance has (no build, no upload)')
    .option('--to <release>', 'release id to roll back to (default: newest earlier good release present everywhere)')
    .option('--wait <duration>', 'wait this long for a held lock (e.g. 30s, 5m)')
    .action(async (o: { to?: string; wait?: string }, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const inv = inventoryFrom(cmd);
      const proxy = await proxyControlFor(inv, progressPrinter());
      const r = await withInterrupts((signal) => rollback(inv, { to: o.to, progress: progressPrinter(), proxy, signal, lockWaitMs: parseDuration(o.wait, '--wait') }));
      out(json ? JSON.stringify(r, null, 2) : renderDeployReportText(r, 'rollback'));
      result.exitCode = r.ok ? 0 : 3;
    });

  program
    .command('releases')
    .description('every release on the fleet with its state on each instance and the rollback candidates')
    .action(async (_o, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
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
    .description('activations, rollbacks, failures and lock breaks across the fleet, newest first')
    .option('-n, --limit <count>', 'show at most this many entries', '50')
    .action(async (o: { limit: string }, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const fleet = openFleet(inventoryFrom(cmd));
      try {
        const { infos, unreachable } = await readFleetReleases(fleet);
        const entries = mergedHistory(infos).slice(0, Number(o.limit) || 50);
        if (json) out(JSON.stringify(entries, null, 2));
        else out(renderTable(['time', 'instance', 'event', 'release', 'previous', 'by', 'note'], entries.map((h) => [h.time, h.instance, h.event, h.release, h.previous ?? '-', `${h.user}@${h.machine}`, h.message ?? ''])));
        result.exitCode = reportUnreachable(unreachable);
      } finally {
        await fleet.close();
      }
    });

  program
    .command('status')
    .description('one row per instance: release on disk, release running, health, proxy view, lock')
    .action(async (_o, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const rows = await fleetStatus(inventoryFrom(cmd));
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
      result.exitCode = rows.some((r) => !r.reachable) ? 3 : digests.size === 1 && !digests.has(null) ? 0 : 1;
      if (!json) out(statusVerdict(rows));
    });


  program
    .command('drift')
    .description('compare every instance with the expected release (files hashed on the host, process, current, rollback target, proxy)')
    .option('-r, --release <id>', 'expected release (id, "latest" or manifest path); default: the last one activated')
    .option('-q, --quiet', 'print nothing when there is no drift (for cron)')
    .option('--repair', 'put drifted instances back on the expected release, then verify')
    .action(async (o: { release?: string; quiet?: boolean; repair?: boolean }, cmd: Command) => {
      const json = (cmd.optsWithGlobals() as GlobalOptions).json;
      const inv = inventoryFrom(cmd);
      const scan = await scanDrift(inv, { release: o.release });
      if (!o.repair) {
        if (!(o.quiet && scan.report.exitCode === 0)) out(json ? JSON.stringify(scan.report, null, 2) : renderDriftText(scan.report));
        result.exitCode = scan.report.exitCode;
        return;
      }
      if (!json && !(o.quiet && scan.report.exitCode === 0)) out(renderDriftText(scan.report));
      const proxy = scan.report.exitCode === 0 ? undefined : await proxyControlFor(inv, progressPrinter(o.quiet));
      const r = await withInterrupts((signal) => repairDrift(inv, scan, { scanOptions: { release: o.release }, proxy, progress: progressPrinter(o.quiet), signal }));
      if (json) out(JSON.stringify(r, null, 2));
      else if (scan.report.exitCode !== 0) out(renderRepairText(r, (v) => renderReportTable(v.reports), renderDriftText));
      result.exitCode = r.exitCode;
    });

  return program;
}

/**
 * Run the CLI. @param argv arguments after `node lockstep`. @returns the process exit code.
 * Never throws: every error becomes one clear message and an exit code.
 */
export async function main(argv: string[]): Promise<number> {
  const result = { exitCode: 0 };
  const program = buildProgram(result);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return result.exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2;
    }
    if (e instanceof LockstepError) {
      err(`lockstep: ${e instanceof ConfigError ? 'configuration error' : 'error'}: ${e.message}`);
      for (const d of e.details) err(`  ${d}`);
      return e.exitCode;
    }
    err(`lockstep: unexpected error: ${(e as Error)?.stack ?? String(e)}`);
    err('This is a bug in lockstep; the state of each instance is reported by `lockstep status`.');
    return 3;
  }
}
