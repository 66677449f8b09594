/**
 * The audit history of an instance (`.lockstep/history.jsonl`, one JSON object per line, append
 * only): what each entry holds, how an entry is completed from the operation that writes it
 * (who, from which machine, the operator's `-m` message, the source commit, the outcome), and
 * how the file is read back.
 */
import os from 'node:os';

/** Which command wrote an entry. */
export type HistoryOperation = 'deploy' | 'rollback' | 'repair' | 'lock';

/** One line in `.lockstep/history.jsonl`. Fields marked optional are absent in older entries. */
export interface HistoryEntry {
  /** ISO time the entry was written. */
  time: string;
  /** `probe`: what users saw through the proxy during an operation (see `probe`); it changes no release's state. */
  event: 'activate' | 'rollback' | 'failed' | 'lock-broken' | 'probe';
  release: string;
  digest: string;
  /** The release the instance ran before (null: none). */
  previous: string | null;
  instance: string;
  /** Login name of the person who ran the command, on `machine`. */
  user: string;
  /** Host name of the machine the command ran on. */
  machine: string;
  /** The command that wrote the entry (an automatic rollback within a deploy is `deploy`). */
  operation?: HistoryOperation;
  /** `ok`, or `failed` for a failed activation or hook. */
  outcome?: 'ok' | 'failed';
  /** The operator's note (`-m`); for `lock-broken`, what was broken. Older failed entries hold their error here. */
  message?: string;
  /** Source of the release (its manifest's `source`): the git commit and whether the tree was dirty. */
  source?: { revision: string | null; dirty: boolean } | null;
  /** Why the step failed. */
  error?: string;
  /** The hook that failed (e.g. `before_activate`), when a hook was the failure. */
  hook?: string;
  /** Figures of the rollout probe (checks/rollout-probe.ts ProbeFigures), on `probe` entries. */
  probe?: Record<string, unknown>;
}

/** What the command writing history says about itself: set once per operation on the fleet. */
export interface AuditContext {
  operation?: HistoryOperation;
  /** The operator's `-m` message. */
  message?: string;
}

/** The fields a caller gives; the rest are completed by `completeEntry`. */
export type HistoryInput = Omit<HistoryEntry, 'time' | 'instance' | 'user' | 'machine' | 'outcome' | 'operation' | 'source'> &
  Partial<Pick<HistoryEntry, 'outcome' | 'operation' | 'source'>>;

/**
 * A full history entry: the time, instance, user and machine (this process's), the operation and
 * message from `audit` unless the input has its own, `outcome` (`failed` for a `failed` event,
 * else `ok`) and `source`.
 */
export function completeEntry(input: HistoryInput, instance: string, audit: AuditContext, source: HistoryEntry['source']): HistoryEntry {
  const entry: HistoryEntry = {
    time: new Date().toISOString(),
    instance,
    user: os.userInfo().username,
    machine: os.hostname(),
    operation: audit.operation,
    outcome: input.event === 'failed' ? 'failed' : 'ok',
    source,
    ...input,
  };
  if (entry.message === undefined && audit.message !== undefined) entry.message = audit.message;
  for (const k of Object.keys(entry) as (keyof HistoryEntry)[]) if (entry[k] === undefined) delete entry[k];
  return entry;
}

/** Parse history.jsonl text (oldest first). Unparseable lines (a torn last line from a killed writer) are skipped. */
export function parseHistory(text: string): HistoryEntry[] {
  const entries: HistoryEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      entries.push(JSON.parse(line) as HistoryEntry);
    } catch {
      /* skipped */
    }
  }
  return entries;
}

/** `abcdef0123456789…` -> `abcdef012345` (+ `-dirty`); `-` when unknown. */
export function shortSource(source: HistoryEntry['source']): string {
  if (!source?.revision) return '-';
  return `${source.revision.slice(0, 12)}${source.dirty ? '-dirty' : ''}`;
}

/** The note column of `lockstep history`: the message, the failed hook and the error. */
export function historyNote(h: HistoryEntry): string {
  return [h.message, h.hook ? `${h.hook} hook failed` : undefined, h.error ? `error: ${h.error}` : undefined].filter(Boolean).join('; ');
}
