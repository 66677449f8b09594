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
import { PhaseClock, renderPhaseSummary } from './phases.ts';

/** The exit code a verb sets (0 ok, 1 a check found a problem, 2 usage or configuration, 3 failed part-way). */
export interface CliResult {
  exitCode: number;
}

export interface GlobalOptions {
  inventory: string;
  json?: boolean;
  jsonEvents?: boolean;
}

/** False once a write to stdout/stderr failed (EPIPE: the reader went away); nothing more is written there. */
const writable = { stdout: true, stderr: true };

export function out(line: string): void {
  if (writable.stdout) process.stdout.write(`${line}\n`);
}

/** Set by --json-events: everything on stderr is one JSON object per line (see `emitEvent`). */
let jsonEvents = false;

/** Turn --json-events on or off (the CLI's preAction hook). */
export function setJsonEvents(on: boolean): void {
  jsonEvents = on;
}

/**
 * Write one event line on stderr: `{"time": ISO, "type": ..., ...fields}`. Used for every
 * stderr line when --json-events is on, so CI systems read one JSON object per line.
 */
export function emitEvent(type: string, fields: Record<string, unknown>): void {
  if (writable.stderr) process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), type, ...fields })}\n`);
}

export function err(line: string): void {
  if (jsonEvents) emitEvent('message', { message: line });
  else if (writable.stderr) process.stderr.write(`${line}\n`);
}

/** What an interrupt (signal, or EPIPE) aborts: set while `withInterrupts` runs. */
let interrupt: ((why: string) => void) | undefined;
/** Why the last operation was interrupted, once it was. */
let interruptedBy: string | undefined;
/** The state sentence of the last operation that ended (for an EPIPE when its report is written). */
let lastState: string | undefined;

/** The reason the last operation was interrupted (`SIGTERM`, `EPIPE on stdout`...), or undefined. */
export function interruptReason(): string | undefined {
  return interruptedBy;
}

/** The streams `installPipeGuards` already guards. */
const guarded = new Set<string>();

/**
 * Make a closed stdout or stderr (`lockstep deploy | head -3`: EPIPE) harmless: the stream is
 * marked dead, and the operation in progress is interrupted as by a signal (the step finishes,
 * what was switched rolls back, the lock is released). Without this, Node turns the EPIPE into
 * an uncaught error that kills the process with the lock held. Call once, at start.
 */
export function installPipeGuards(): void {
  for (const name of ['stdout', 'stderr'] as const) {
    const stream = process[name];
    // Always our own listener: a pipe()'s error listener on stdout rethrows when it is the only one.
    if (guarded.has(name)) continue;
    guarded.add(name);
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (!writable[name]) return;
      writable[name] = false;
      const why = `${e.code ?? 'error'} on ${name}`;
      if (interrupt) interrupt(why);
      else if (lastState !== undefined) err(`lockstep: ${why} while writing the report; the lock is released; fleet state: ${lastState}`);
    });
  }
}

let logger: Logger | undefined;

/** Send progress to `l` as pino JSON instead of text lines (--log-level). */
export function setCliLogger(l: Logger): void {
  logger = l;
}

/** Phase durations of the operation in progress (progress lines that name a phase). */
const phases = new PhaseClock();

/** `21:40:12` local time of day, for progress lines. */
function clock(d = new Date()): string {
  return d.toTimeString().slice(0, 8);
}

/**
 * Per-instance progress on stderr, so stdout stays clean for --json and tables: `HH:MM:SS
 * [instance] line`. With --json-events each line is a JSON event `{time, type: "progress",
 * instance, message, phase?}`; with --log-level (or LOCKSTEP_LOG) a pino JSON line. A third
 * argument names the phase the instance enters (`upload`, `drain`, `gates`... or `-` for none):
 * it is timed for the summary table (`printPhaseSummary`).
 */
export function progressPrinter(quiet = false): (instance: string, line: string, phase?: string) => void {
  return (instance, line, phase) => {
    if (phase !== undefined) phases.mark(instance, phase);
    if (logger) logger.info({ instance, phase }, line);
    else if (jsonEvents) emitEvent('progress', phase !== undefined && phase !== '-' ? { instance, message: line, phase } : { instance, message: line });
    else if (!quiet) err(`${clock()} [${instance}] ${line}`);
  };
}

/**
 * At the end of a deploy, rollback or repair: the per-instance phase durations as a table on
 * stderr (or one `summary` event with --json-events, durations in ms), then forget them.
 * Prints nothing when no phase was marked.
 */
export function printPhaseSummary(quiet = false): void {
  if (phases.empty()) return;
  const totals = phases.finish();
  phases.reset();
  if (jsonEvents) emitEvent('summary', { phases_ms: Object.fromEntries([...totals].map(([i, t]) => [i, Object.fromEntries(t)])) });
  else if (!quiet && !logger) err(`phase durations per instance:\n${renderPhaseSummary(totals)}`);
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

/** The signals that interrupt an operation (SIGHUP: the terminal went away). */
const INTERRUPT_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Run an operation with Ctrl-C, SIGTERM, SIGHUP and EPIPE on stdout/stderr turned into an
 * abort: the first one lets the step in progress finish, the rollout roll back what was switched
 * and release its lock; a second signal exits at once (130). When the operation was interrupted,
 * one line on stderr (when writable) says what state the fleet is in: `stateOf(result)`.
 * @param fn the operation; it must honour `signal` and release its lock before returning.
 * @param stateOf the one sentence saying what the fleet serves after `fn` returned.
 */
export async function withInterrupts<T>(fn: (signal: AbortSignal) => Promise<T>, stateOf?: (result: T) => string): Promise<T> {
  const controller = new AbortController();
  interruptedBy = undefined;
  const abort = (why: string): void => {
    if (controller.signal.aborted) return;
    interruptedBy = why;
    controller.abort();
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted && interruptedBy?.startsWith('SIG')) {
      err(`lockstep: second ${sig}: exiting now; the lock may still be held: run \`lockstep status\` and \`lockstep lock status\` to see the state left behind`);
      process.exit(130);
    }
    err(`lockstep: ${sig} received: finishing the step in progress (an upload in progress is aborted), then rolling back what was switched and releasing the lock (send again to exit at once)`);
    abort(sig);
  };
  interrupt = abort;
  for (const s of INTERRUPT_SIGNALS) process.on(s, onSignal);
  try {
    const result = await fn(controller.signal);
    lastState = stateOf ? stateOf(result) : undefined;
    if (interruptedBy) err(`lockstep: interrupted (${interruptedBy}); the lock is released; fleet state: ${stateOf ? stateOf(result) : 'see above'}`);
    return result;
  } catch (e) {
    if (interruptedBy) err(`lockstep: interrupted (${interruptedBy}); the lock is released; fleet state: unknown: ${(e as Error).message} (run \`lockstep status\`)`);
    throw e;
  } finally {
    interrupt = undefined;
    for (const s of INTERRUPT_SIGNALS) process.off(s, onSignal);
  }
}

/**
 * Await `work`, or give up on it when `signal` aborts (it keeps running; its result is dropped).
 * @returns the result, or undefined when interrupted first.
 */
export async function unlessInterrupted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return undefined;
  let onAbort: () => void = () => {};
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
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

