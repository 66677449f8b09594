/**
 * What every verb of the command line shares: the global options, where output goes (tables and
 * JSON on stdout, progress on stderr), the optional pino logger, the inventory, durations, the
 * signal handling of long operations, and the exit-code holder each verb sets.
 */
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { resolve } from 'node:path';
import ms, { type StringValue } from 'ms';
import { ConfigError } from '../../config/errors.ts';
import { loadInventory, type Inventory } from '../../config/inventory.ts';

/** The exit code a verb sets (0 ok, 1 a check found a problem, 2 usage or configuration, 3 failed part-way). */
export interface CliResult {
  exitCode: number;
}

export interface GlobalOptions {
  inventory: string;
  json?: boolean;
}

export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function err(line: string): void {
  process.stderr.write(`${line}\n`);
}

let logger: Logger | undefined;

/** Send progress to `l` as pino JSON instead of text lines (--log-level). */
export function setCliLogger(l: Logger): void {
  logger = l;
}

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

/** The inventory named by --inventory (default ./inventory.yaml). @throws ConfigError naming file, line and field. */
export function inventoryFrom(cmd: Command): Inventory {
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
export async function withInterrupts<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
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

/** True when --json was given. */
export function wantsJson(cmd: Command): boolean {
  return Boolean((cmd.optsWithGlobals() as GlobalOptions).json);
}

/** Print one line per unreachable instance. @returns the exit code: 3 when any, else 0. */
export function reportUnreachable(unreachable: { instance: string; error: string }[]): number {
  for (const u of unreachable) err(`${u.instance}: unreachable: ${u.error}`);
  return unreachable.length ? 3 : 0;
}

