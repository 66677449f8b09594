/**
 * `lockstep logs [-f]` (Kamal's `app logs`): the app's log from every selected instance
 * (`<deploy_to>/shared/logs/app.log`, remote/commands.ts appLogPath), each line with its
 * instance, merged by the time written in the lines (the app logs pino JSON: `time` in ms since
 * the epoch; a line without one, e.g. a stack trace, takes the time of the line before it).
 *
 * Following polls each instance every `intervalMs` for the bytes appended since the last poll
 * (by byte offset and inode, so a replaced or truncated file is read from its start, as
 * `tail -F` does) instead of keeping a `tail -F` running on every host: nothing is left running
 * on an instance when the follower is killed or its connection drops.
 */
import type { Inventory } from '../../config/inventory.ts';
import * as cmd from '../remote/commands.ts';
import { openFleet, reasonOf, type Fleet, type TransportFactory } from './fleet.ts';

/** One log line of one instance. `time`: ms since the epoch (from the line, or inherited; null when unknown). */
export interface LogLine {
  instance: string;
  time: number | null;
  line: string;
}

/** At most this many bytes per instance per poll (the rest comes with the next poll). */
const MAX_POLL_BYTES = 1024 * 1024;

/**
 * The time written in a log line: pino's `time` (ms since the epoch, or an ISO string), or an
 * ISO timestamp at the start of a text line. @returns ms since the epoch, or null.
 */
export function logLineTime(line: string): number | null {
  const t = line.trimStart();
  if (t.startsWith('{')) {
    try {
      const v = (JSON.parse(t) as { time?: unknown }).time;
      if (typeof v === 'number' && Number.isFinite(v)) return v;
      if (typeof v === 'string' && Number.isFinite(Date.parse(v))) return Date.parse(v);
    } catch {
      /* not JSON after all: falls through */
    }
  }
  const iso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})/.exec(t);
  return iso ? Date.parse(iso[0]) : null;
}

/**
 * Give every line a time (its own, else the previous line's of the same instance, else
 * `carry`), then merge all instances' lines by time; equal times keep instance order, then
 * line order. @param batches per instance, its lines in file order, and the time to inherit.
 * @returns the merged lines, and per instance the last time seen (to carry into the next poll).
 */
export function mergeLogLines(batches: { instance: string; lines: string[]; carry?: number | null }[]): { merged: LogLine[]; last: Map<string, number | null> } {
  const all: (LogLine & { order: number; seq: number })[] = [];
  const last = new Map<string, number | null>();
  batches.forEach((b, order) => {
    let time = b.carry ?? null;
    b.lines.forEach((line, seq) => {
      time = logLineTime(line) ?? time;
      all.push({ instance: b.instance, time, line, order, seq });
    });
    last.set(b.instance, time);
  });
  // A line with no time anywhere before it sorts first (it was written before the first timed one).
  all.sort((a, b) => (a.time ?? -Infinity) - (b.time ?? -Infinity) || a.order - b.order || a.seq - b.seq);
  return { merged: all.map(({ instance, time, line }) => ({ instance, time, line })), last };
}

/** Where following continues on one instance. */
interface Cursor {
  inode: string;
  offset: number;
  carry: number | null;
}

/** Split `<inode> <size>\n[<offset>\n]<data>` as printed by logTail / logSince. */
function splitHeader(stdout: string, withOffset: boolean): { inode: string; size: number; offset: number; data: string } {
  const first = stdout.indexOf('\n');
  const [inode = '-', size = '0'] = stdout.slice(0, first).trim().split(' ');
  if (!withOffset) return { inode, size: Number(size), offset: 0, data: stdout.slice(first + 1) };
  const second = stdout.indexOf('\n', first + 1);
  return { inode, size: Number(size), offset: Number(stdout.slice(first + 1, second)), data: stdout.slice(second + 1) };
}

export interface LogsOptions {
  /** Instance names (fleet/selection.ts); default every instance. */
  instances?: string[];
  /** Lines per instance to start with (default 100). */
  lines?: number;
  /** Read this log instead of the instances' (`logs --proxy`: the proxy's access log). */
  proxy?: LogSource;
  factory?: TransportFactory;
}

export interface FollowOptions extends LogsOptions {
  /** Poll every this many ms (default 500). */
  intervalMs?: number;
  /** Ends following (Ctrl-C, SIGTERM, a closed stdout). */
  signal: AbortSignal;
  /** Called with each batch of new lines, merged by time, as they arrive. */
  onLines: (lines: LogLine[]) => void;
  /** Called when an instance cannot be read (once per poll it fails). */
  onError?: (instance: string, error: string) => void;
}

/** A log to read: an instance's app log, or the proxy's access log on this machine. */
export interface LogSource {
  name: string;
  file: string;
  /** Run a command where the file is; @returns stdout. @throws when it fails. */
  run(command: string): Promise<string>;
}

/** The app log of every instance of `fleet`. */
function fleetSources(fleet: Fleet): LogSource[] {
  return fleet.ops.map((o) => ({ name: o.name, file: cmd.appLogPath(o.layout), run: (c) => o.run(c) }));
}

/** Settle `fn` on every source in parallel. */
function each<T>(sources: LogSource[], fn: (s: LogSource) => Promise<T>): Promise<PromiseSettledResult<T>[]> {
  return Promise.allSettled(sources.map(fn));
}

/** Read the last `lines` lines of each source. */
async function readTails(sources: LogSource[], lines: number): Promise<{ merged: LogLine[]; cursors: Map<string, Cursor>; errors: { instance: string; error: string }[] }> {
  const results = await each(sources, async (s) => splitHeader(await s.run(cmd.logTail(s.file, lines)), false));
  const cursors = new Map<string, Cursor>();
  const errors: { instance: string; error: string }[] = [];
  const batches: { instance: string; lines: string[] }[] = [];
  results.forEach((r, i) => {
    const name = sources[i]!.name;
    if (r.status === 'rejected') {
      errors.push({ instance: name, error: reasonOf(r) });
      return;
    }
    const text = r.value.data.endsWith('\n') ? r.value.data.slice(0, -1) : r.value.data;
    batches.push({ instance: name, lines: text ? text.split('\n') : [] });
    cursors.set(name, { inode: r.value.inode, offset: r.value.size, carry: null });
  });
  const { merged, last } = mergeLogLines(batches);
  for (const [name, t] of last) cursors.get(name)!.carry = t;
  return { merged, cursors, errors };
}

/**
 * The last `lines` lines of the app log of every selected instance, merged by time.
 * @returns the lines and the instances that could not be read (with the reason); never throws for an instance.
 */
export async function readLogs(inventory: Inventory, options: LogsOptions = {}): Promise<{ lines: LogLine[]; errors: { instance: string; error: string }[] }> {
  const fleet = openFleet(inventory, { factory: options.factory, instanceNames: options.proxy ? [] : options.instances });
  try {
    const { merged, errors } = await readTails(options.proxy ? [options.proxy] : fleetSources(fleet), options.lines ?? 100);
    return { lines: merged, errors };
  } finally {
    await fleet.close();
  }
}

/**
 * Print the last `lines` lines (merged), then every line appended afterwards, until `signal`
 * aborts. An instance that cannot be read is reported through `onError` and tried again at the
 * next poll. @returns when `signal` aborted (connections closed).
 */
export async function followLogs(inventory: Inventory, options: FollowOptions): Promise<void> {
  const fleet = openFleet(inventory, { factory: options.factory, instanceNames: options.proxy ? [] : options.instances });
  const sources = options.proxy ? [options.proxy] : fleetSources(fleet);
  const interval = options.intervalMs ?? 500;
  try {
    const first = await readTails(sources, options.lines ?? 100);
    for (const e of first.errors) options.onError?.(e.instance, e.error);
    if (first.merged.length && !options.signal.aborted) options.onLines(first.merged);
    const cursors = first.cursors;
    while (!options.signal.aborted) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, interval);
        function done(): void {
          clearTimeout(t);
          options.signal.removeEventListener('abort', done);
          resolve();
        }
        options.signal.addEventListener('abort', done, { once: true });
      });
      if (options.signal.aborted) break;
      const polled = await each(sources, async (o) => {
        const c = cursors.get(o.name) ?? { inode: '-', offset: 0, carry: null };
        const h = splitHeader(await o.run(cmd.logSince(o.file, c.inode, c.offset, MAX_POLL_BYTES)), true);
        // Only whole lines; a line still being written comes with the next poll.
        const cut = h.data.lastIndexOf('\n');
        const whole = cut >= 0 ? h.data.slice(0, cut) : Buffer.byteLength(h.data) >= MAX_POLL_BYTES ? h.data : null;
        const consumed = whole === null ? 0 : Buffer.byteLength(whole) + (cut >= 0 ? 1 : 0);
        cursors.set(o.name, { inode: h.inode, offset: h.offset + consumed, carry: c.carry });
        return { instance: o.name, lines: whole === null ? [] : whole.split('\n'), carry: c.carry };
      });
      const batches: { instance: string; lines: string[]; carry: number | null }[] = [];
      polled.forEach((r, i) => {
        if (r.status === 'fulfilled') batches.push(r.value);
        else options.onError?.(sources[i]!.name, reasonOf(r));
      });
      const { merged, last } = mergeLogLines(batches);
      for (const [name, t] of last) cursors.get(name)!.carry = t;
      if (merged.length && !options.signal.aborted) options.onLines(merged);
    }
  } finally {
    await fleet.close();
  }
}
