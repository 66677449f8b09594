/**
 * `lockstep logs [-f]` and `lockstep exec -- CMD`: the operator's daily verbs over the fleet
 * (Kamal's `app logs` and `app exec`). The work is in fleet/logs.ts and fleet/exec.ts.
 */
import type { Command } from 'commander';
import { ConfigError } from '../../config/errors.ts';
import { execOnFleet, type ExecOutcome } from '../fleet/exec.ts';
import { followLogs, readLogs, type LogLine, type LogSource } from '../fleet/logs.ts';
import { resolve } from 'node:path';
import type { Inventory } from '../../config/inventory.ts';
import { proxySection } from '../../config/proxy-section.ts';
import { LocalTransport } from '../transport/local.ts';
import { succeeded } from '../transport/types.ts';
import { err, inventoryFrom, out, parseDuration, wantsJson, type CliResult } from './context.ts';
import { instancesOption, selectionFrom } from './instances.ts';
import { renderTable } from './table.ts';

/** A positive whole number option, or ConfigError (exit 2) naming it. */
function wholeNumber(value: string, option: string, min = 1): number {
  if (!/^\d+$/.test(value) || Number(value) < min) throw new ConfigError(`${option}: "${value}" is not a whole number${min > 0 ? ' of at least 1' : ''}`, { field: option });
  return Number(value);
}

/** `web-1 | <line>` with the names padded to one width. */
function prefixer(names: string[]): (instance: string, line: string) => string {
  const width = Math.max(0, ...names.map((n) => n.length));
  return (instance, line) => `${instance.padEnd(width)} | ${line}`;
}

const logJson = (l: LogLine) => ({ instance: l.instance, time: l.time === null ? null : new Date(l.time).toISOString(), line: l.line });

/**
 * Run `fn` until Ctrl-C, SIGTERM, SIGHUP or a closed stdout (`| head`) aborts its signal; then
 * it returns normally (exit 0): following has no state to restore.
 */
async function untilStopped(fn: (signal: AbortSignal) => Promise<void>): Promise<void> {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, stop);
  process.stdout.on('error', stop);
  try {
    await fn(controller.signal);
  } finally {
    for (const s of signals) process.off(s, stop);
    process.stdout.off('error', stop);
  }
}

/** The proxy's access log on this machine (proxy.access_log.path, relative to the inventory). */
function proxyAccessLogSource(inv: Inventory): LogSource {
  const local = new LocalTransport('proxy');
  return {
    name: 'proxy',
    file: resolve(inv.dir, proxySection(inv).access_log.path),
    async run(command) {
      const r = await local.exec(command);
      if (!succeeded(r)) throw new Error(r.stderr.trim() || `exit ${r.code}`);
      return r.stdout;
    },
  };
}

/** Register these verbs on `program`; their actions set `result.exitCode`. */
export function registerOpsVerbs(program: Command, result: CliResult): void {
  program
    .command('logs')
    .description("the app's log from every instance (<deploy_to>/shared/logs/app.log), each line prefixed with its instance, merged by the time in the lines")
    .option('-f, --follow', 'keep printing new lines as they are written, until Ctrl-C / SIGTERM')
    .option('-n, --lines <count>', 'lines per instance to start with', '100')
    .option('--proxy', "the proxy's access log instead (proxy.access_log.path, on the machine that runs `lockstep proxy`)")
    .addOption(instancesOption('read these'))
    .action(async (o: { follow?: boolean; lines: string; instances?: string[]; proxy?: boolean }, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const lines = wholeNumber(o.lines, '--lines', 0);
      const instances = selectionFrom(o, inv);
      const proxy = o.proxy ? proxyAccessLogSource(inv) : undefined;
      const names = proxy ? ['proxy'] : (instances ?? inv.instances.map((i) => i.name));
      const prefix = prefixer(names);
      if (!o.follow) {
        const r = await readLogs(inv, { instances, lines, proxy });
        if (json) out(JSON.stringify({ lines: r.lines.map(logJson), errors: r.errors }, null, 2));
        else for (const l of r.lines) out(prefix(l.instance, l.line));
        for (const e of r.errors) err(`${e.instance}: cannot read the log: ${e.error}`);
        result.exitCode = r.errors.length ? 3 : 0;
        return;
      }
      await untilStopped((signal) =>
        followLogs(inv, {
          instances,
          lines,
          proxy,
          signal,
          // --json with -f: one JSON object per line (a stream has no end to close an array).
          onLines: (batch) => out(batch.map((l) => (json ? JSON.stringify(logJson(l)) : prefix(l.instance, l.line))).join('\n')),
          onError: (instance, e) => err(`${instance}: cannot read the log: ${e} (trying again)`),
        }),
      );
    });

  program
    .command('exec')
    .description('run a command in <deploy_to>/current on every instance with the service environment; per-instance exit codes')
    .argument('<command...>', 'the command (after --), run by bash on each instance; several words are joined with spaces, as ssh does')
    .addOption(instancesOption('run on these'))
    .option('-c, --concurrency <n>', 'instances at once (default: deploy.concurrency)')
    .option('--timeout <duration>', 'stop the command on an instance after this long (e.g. 30s, 5m)')
    .action(async (words: string[], o: { instances?: string[]; concurrency?: string; timeout?: string }, cmd: Command) => {
      const json = wantsJson(cmd);
      const inv = inventoryFrom(cmd);
      const instances = selectionFrom(o, inv);
      const concurrency = o.concurrency === undefined ? undefined : wholeNumber(o.concurrency, '--concurrency');
      const timeoutMs = parseDuration(o.timeout, '--timeout');
      const command = words.join(' ');
      const prefix = prefixer(instances ?? inv.instances.map((i) => i.name));
      const printOutput = (r: ExecOutcome): void => {
        for (const l of r.stdout.replace(/\n$/, '').split('\n')) if (r.stdout) out(prefix(r.instance, l));
        for (const l of r.stderr.replace(/\n$/, '').split('\n')) if (r.stderr) err(prefix(r.instance, l));
      };
      const outcomes = await execOnFleet(inv, command, { instances, concurrency, timeoutMs, onDone: json ? undefined : printOutput });
      const ok = outcomes.every((r) => r.exitCode === 0);
      if (json) out(JSON.stringify({ command, ok, instances: outcomes }, null, 2));
      else {
        out(renderTable(
          ['instance', 'exit', 'ms', 'note'],
          outcomes.map((r) => [r.instance, r.exitCode ?? (r.signal ? r.signal : 'NOT RUN'), r.durationMs, r.error ?? (r.exitCode === 0 ? '' : 'FAILED')]),
        ));
        out(ok ? `ok: exit 0 on all ${outcomes.length} instances` : `FAILED on ${outcomes.filter((r) => r.exitCode !== 0).map((r) => r.instance).join(', ')}`);
      }
      // 3: the command could not run somewhere (unreachable); 1: it ran and failed somewhere.
      result.exitCode = outcomes.some((r) => r.error) ? 3 : ok ? 0 : 1;
    });
}
