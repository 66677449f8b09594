/**
 * The `lockstep` command line. Parses arguments (commander), runs one verb, and is the one
 * place that turns typed errors into exit codes: 0 ok, 1 a check found a problem, 2 usage or
 * configuration error, 3 an operation failed part-way (DESIGN.md, "CLI conventions").
 */
import { Command, CommanderError, Option } from 'commander';
import pino from 'pino';
import { ConfigError, LockstepError } from '../../config/errors.ts';
import { setTransportLogger } from '../fleet/fleet.ts';
import { err, installPipeGuards, interruptReason, setCliLogger, setJsonEvents, type CliResult } from './context.ts';
import { registerDriftVerb } from './drift.ts';
import { registerFleetVerbs } from './fleet.ts';
import { registerLockAndHostVerbs } from './lock.ts';
import { registerOpsVerbs } from './ops.ts';
import { registerProxyVerbs } from './proxy.ts';
import { registerReleaseVerbs } from './release.ts';

export { parseDuration, progressPrinter } from './context.ts';

/** Build the commander program: global options and every verb. Actions set `result.exitCode`. */
export function buildProgram(result: CliResult): Command {
  const program = new Command('lockstep')
    .description('Build once, deploy the identical artifact everywhere, prove version parity and session isolation.')
    .option('-i, --inventory <file>', 'inventory file', 'inventory.yaml')
    .option('--json', 'machine-readable output')
    .option('--json-events', 'progress on stderr as JSON events, one object per line (for CI): progress, heartbeats, the phase summary')
    .addOption(new Option('--log-level <level>', 'JSON logs (pino) on stderr instead of progress lines').choices(['trace', 'debug', 'info', 'warn', 'error']).env('LOCKSTEP_LOG'))
    .exitOverride()
    .configureHelp({ showGlobalOptions: true })
    .hook('preAction', (cmd) => {
      setJsonEvents(Boolean((cmd.opts() as { jsonEvents?: boolean }).jsonEvents));
      const level = (cmd.opts() as { logLevel?: string }).logLevel;
      if (level) {
        const logger = pino({ level, base: { app: 'lockstep' } }, pino.destination(2));
        setCliLogger(logger);
        setTransportLogger(logger);
      }
    })
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  registerReleaseVerbs(program, result);
  registerProxyVerbs(program, result);
  registerLockAndHostVerbs(program, result);
  registerFleetVerbs(program, result);
  registerDriftVerb(program, result);
  registerOpsVerbs(program, result);
  return program;
}

/**
 * Run the CLI. @param argv arguments after `node lockstep`. @returns the process exit code.
 * Never throws: every error becomes one clear message and an exit code.
 */
export async function main(argv: string[]): Promise<number> {
  const result = { exitCode: 0 };
  installPipeGuards();
  const program = buildProgram(result);
  try {
    await program.parseAsync(argv, { from: 'user' });
    // Interrupted: work given up on (a verification) must not keep the process alive.
    if (interruptReason()) setTimeout(() => process.exit(result.exitCode), 0).unref();
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
