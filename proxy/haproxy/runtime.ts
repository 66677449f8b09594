/**
 * HAProxy's Runtime API over its stats socket (`stats socket ... level admin`): one command per
 * connection (the socket's non-interactive mode: send the line, read until HAProxy closes), and
 * parsers for the two answers the engine reads, `show servers state` and `show stat` (CSV).
 * Source of the formats: HAProxy 2.6 management guide, sections 9.3 ("show servers state",
 * "show stat") and the admin-state bits of src/server.h (SRV_ADMF_*).
 */
import net from 'node:net';
import { parse as parseCsv } from 'csv-parse/sync';

/** The Runtime API failed: socket unreachable, no answer in time, or HAProxy refused the command. */
export class RuntimeApiError extends Error {}

/**
 * Send one command and return HAProxy's whole answer.
 * @param socketPath the stats socket. @param command one line (no newline). @param timeoutMs bound, ms.
 * @throws RuntimeApiError when the socket cannot be reached or does not answer within `timeoutMs`.
 */
export function runtimeCommand(socketPath: string, command: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(socketPath, () => sock.end(`${command}\n`));
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new RuntimeApiError(`HAProxy runtime API (${socketPath}): no answer to "${command}" within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new RuntimeApiError(`HAProxy runtime API (${socketPath}) unreachable: ${err.code ?? err.message}. Is haproxy running?`));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/**
 * Run a command whose success answer is empty (`set server ...`): any text back is HAProxy's error.
 * @throws RuntimeApiError with HAProxy's answer (e.g. "No such server.").
 */
export async function runtimeAction(socketPath: string, command: string, timeoutMs = 5000): Promise<void> {
  const answer = (await runtimeCommand(socketPath, command, timeoutMs)).trim();
  if (answer !== '') throw new RuntimeApiError(`HAProxy refused "${command}": ${answer.split('\n')[0]}`);
}

/** srv_op_state values. */
export const OP_STATE = { stopped: 0, starting: 1, running: 2, stopping: 3 } as const;
/** srv_admin_state bits: forced/inherited/resolver/config maint, forced/inherited drain. */
const ADMF_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;
const ADMF_DRAIN = 0x08 | 0x10;

/** One server line of `show servers state`. */
export interface ServerState {
  backend: string;
  name: string;
  address: string;
  port: number;
  /** 0 stopped (down), 1 starting, 2 running (up), 3 stopping. */
  opState: number;
  /** The SRV_ADMF_* bits. */
  adminState: number;
  maint: boolean;
  drain: boolean;
  weight: number;
}

/**
 * Parse `show servers state` (format version 1: a version line, a `#` header naming the columns,
 * then one space-separated line per server).
 * @throws RuntimeApiError for an unknown format version or a missing column.
 */
export function parseServersState(text: string): ServerState[] {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return [];
  if (lines[0]!.trim() !== '1') throw new RuntimeApiError(`show servers state: unsupported format version "${lines[0]}" (expected 1)`);
  const header = lines[1]?.replace(/^#\s*/, '').split(/\s+/) ?? [];
  const col = (n: string): number => {
    const i = header.indexOf(n);
    if (i < 0) throw new RuntimeApiError(`show servers state: no column ${n} in "${lines[1]}"`);
    return i;
  };
  const c = { be: col('be_name'), name: col('srv_name'), addr: col('srv_addr'), op: col('srv_op_state'), admin: col('srv_admin_state'), w: col('srv_uweight'), port: col('srv_port') };
  return lines.slice(2).map((l) => {
    const f = l.trim().split(/\s+/);
    const admin = Number(f[c.admin]);
    return {
      backend: f[c.be]!,
      name: f[c.name]!,
      address: f[c.addr]!,
      port: Number(f[c.port]),
      opState: Number(f[c.op]),
      adminState: admin,
      maint: (admin & ADMF_MAINT) !== 0,
      drain: (admin & ADMF_DRAIN) !== 0,
      weight: Number(f[c.w]),
    };
  });
}

/** The `show stat` fields the engine reads for one server (or FRONTEND / BACKEND) row. */
export interface StatRow {
  proxy: string;
  name: string;
  /** Requests queued for this server, and sessions on it now. */
  qcur: number;
  scur: number;
  /** e.g. UP, DOWN, DRAIN, MAINT, "UP 1/2". */
  status: string;
  /** Responses by class since start: 1xx..5xx and other. */
  responses: Record<'1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'other', number>;
}

/**
 * Parse `show stat` CSV (header line starts with `# `) with csv-parse, keyed by the header's names.
 * Empty numeric fields read as 0.
 */
export function parseShowStat(text: string): StatRow[] {
  const body = text.replace(/^# /, '');
  const records = parseCsv(body, { columns: true, skip_empty_lines: true, relax_column_count: true }) as Record<string, string>[];
  const n = (v: string | undefined): number => (v === undefined || v === '' ? 0 : Number(v));
  return records.map((r) => ({
    proxy: r.pxname ?? '',
    name: r.svname ?? '',
    qcur: n(r.qcur),
    scur: n(r.scur),
    status: r.status ?? '',
    responses: { '1xx': n(r.hrsp_1xx), '2xx': n(r.hrsp_2xx), '3xx': n(r.hrsp_3xx), '4xx': n(r.hrsp_4xx), '5xx': n(r.hrsp_5xx), other: n(r.hrsp_other) },
  }));
}
