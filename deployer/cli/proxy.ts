/**
 * `lockstep proxy` and `lockstep demo`: the verbs that start the load balancer (through its one entry point).
 */
import type { Command } from 'commander';
import { runProxyCommand } from '../../proxy/command.ts';
import { runDemo, withDemoPorts } from './demo.ts';
import { err, inventoryFrom, out, progressPrinter, wantsJson, type CliResult } from './context.ts';

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
    .option('--port <port>', "the proxy's user port (default: the inventory's proxy.listen)")
    .option('--admin-port <port>', "the proxy's admin API port (default: the inventory's proxy.admin_listen)")
    .action(async (o: { once?: boolean; redis?: boolean | string; port?: string; adminPort?: string }, cmd: Command) => {
      const inv = withDemoPorts(inventoryFrom(cmd), o);
      const redis = typeof o.redis === 'string' ? o.redis : o.redis ? '127.0.0.1:6390' : undefined;
      // --json: the text goes to stderr and stdout gets one JSON document (after the verification).
      const json = wantsJson(cmd);
      result.exitCode = await runDemo(inv, {
        once: Boolean(o.once || process.env.CI),
        redis,
        print: json ? err : out,
        progress: progressPrinter(),
        onResult: json ? (r) => out(JSON.stringify(r, null, 2)) : undefined,
      });
    });
}
