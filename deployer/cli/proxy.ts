/**
 * `lockstep proxy` and `lockstep demo`: the verbs that start the load balancer (through its one entry point).
 */
import type { Command } from 'commander';
import { runProxyCommand } from '../../proxy/command.ts';
import { runDemo } from './demo.ts';
import { inventoryFrom, out, progressPrinter, type CliResult } from './context.ts';

/** Register these verbs on `program`; their actions set `result.exitCode`. */
export function registerProxyVerbs(program: Command, result: CliResult): void {
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
    .option('--redis [host:port]', 'start a redis-server on loopback (default 127.0.0.1:6390) and share the sessions in it (app.session_store: redis); stopped at the end')
    .action(async (o: { once?: boolean; redis?: boolean | string }, cmd: Command) => {
      const inv = inventoryFrom(cmd);
      const redis = typeof o.redis === 'string' ? o.redis : o.redis ? '127.0.0.1:6390' : undefined;
      result.exitCode = await runDemo(inv, { once: Boolean(o.once || process.env.CI), redis, print: out, progress: progressPrinter() });
    });
}
