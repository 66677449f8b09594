/**
 * `lockstep lock status|release` and `lockstep hosts trust`: the deploy lock and SSH host keys.
 */
import type { Command } from 'commander';
import { acquireMaintenanceLock, breakLocks, lockStatus, type LockInfo } from '../fleet/lock.ts';
import { trustHosts } from '../transport/trust.ts';
import { err, inventoryFrom, out, wantsJson, type CliResult } from './context.ts';
import { renderTable } from './table.ts';

/** Lock holders as a table (never the owner token). */
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

/** Register these verbs on `program`; their actions set `result.exitCode`. */
export function registerLockAndHostVerbs(program: Command, result: CliResult): void {
  const lock = program.command('lock').description('the deploy lock on each instance');
  lock
    .command('status')
    .description('who holds the lock on each instance, and whether it is stale')
    .action(async (_o, cmd: Command) => {
      const json = wantsJson(cmd);
      const rows = await lockStatus(inventoryFrom(cmd));
      if (json) out(JSON.stringify(rows, null, 2));
      else out(renderLocks(rows));
      result.exitCode = rows.some((r) => r.error) ? 3 : rows.some((r) => r.held) ? 1 : 0;
    });
  lock
    .command('acquire')
    .description('take the lock on every instance for a maintenance window: deploys, rollbacks and repairs are refused (naming you and the message) until `lockstep lock release`')
    .requiredOption('-m, --message <text>', 'why (shown to whoever tries to deploy)')
    .action(async (o: { message: string }, cmd: Command) => {
      const json = wantsJson(cmd);
      const holder = await acquireMaintenanceLock(inventoryFrom(cmd), o.message);
      if (json) out(JSON.stringify(holder, null, 2));
      else out(`maintenance lock taken on every instance by ${String(holder.user)}@${String(holder.machine)} at ${String(holder.time)}: "${o.message}"\nrelease it with \`lockstep lock release\``);
    });
  lock
    .command('release')
    .description('release a maintenance lock (`lock acquire`); with --force also break STALE deploy locks (older than deploy.lock_ttl_ms, or whose holder process is gone); live deploy locks are never broken')
    .option('--force', 'required: actually break the stale locks')
    .action(async (o: { force?: boolean }, cmd: Command) => {
      const json = wantsJson(cmd);
      const rows = await breakLocks(inventoryFrom(cmd), { force: Boolean(o.force) });
      if (json) out(JSON.stringify(rows, null, 2));
      else out(renderLocks(rows));
      const live = rows.filter((r) => r.held && !r.stale && !r.broken);
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
      const json = wantsJson(cmd);
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
}
