/**
 * The control interface of a running proxy: what the admin API and the fleet dashboard act on.
 * One implementation (`index.ts`), the same in one process and in worker mode. And the admin state
 * that outlives the process: drain and disable decisions, kept in a small JSON file
 * (`readAdminState` / `writeAdminState`), engine-neutral (by instance name).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceState, UpstreamStatus } from './upstream.ts';

/** The answer to a drain: whether in-flight reached 0 (every worker), what is left, the state now. */
export interface DrainOutcome {
  drained: boolean;
  inflight: number;
  state: InstanceState;
}

/** What the admin API acts on. */
export interface AdminControl {
  instances(): Promise<UpstreamStatus[]>;
  /** @returns the instance's status after the change, or undefined for an unknown name. */
  setState(name: string, state: Exclude<InstanceState, 'draining'>): Promise<UpstreamStatus | undefined>;
  /**
   * Mark `name` draining; with `waitMs`, resolve once nothing is in flight on it (every worker) or
   * after `waitMs`. @returns undefined for an unknown name.
   */
  drain(name: string, waitMs: number | null): Promise<DrainOutcome | undefined>;
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Re-reads the upstream set (e.g. from the inventory); absent when the proxy was given a fixed list. */
  reload?: () => Promise<{ added: string[]; removed: string[] }>;
}

// --- admin state that survives a restart --------------------------------------------------------

/** The file, inside the configured state directory, that holds the admin state. */
export const ADMIN_STATE_FILE = 'admin-state.json';

/** What an operator (or a rollout) decided about one instance, other than the default `enabled`. */
export type PersistedState = Exclude<InstanceState, 'enabled'>;

/** The file's content (version 1): only instances that are not enabled are listed. */
interface AdminStateFileV1 {
  version: 1;
  /** ISO time of the write. */
  written_at: string;
  instances: Record<string, PersistedState>;
}

/** The state file is unreadable or not a version-1 admin state: the proxy refuses to start. */
export class AdminStateError extends Error {
  readonly code = 'LOCKSTEP_PROXY_STATE';
}

/**
 * Read the admin state persisted in `dir` (any engine may use it: the state is by instance name).
 * @param dir the state directory (`proxy.state_dir`).
 * @returns instance name -> `draining` | `disabled`; empty when the file does not exist yet.
 * @throws AdminStateError naming the file when it cannot be read or is not a valid state file
 *   (the operator fixes or deletes it: starting with every instance enabled could send traffic to an
 *   instance someone disabled).
 */
export function readAdminState(dir: string): Map<string, PersistedState> {
  const file = join(dir, ADMIN_STATE_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new AdminStateError(`cannot read the proxy admin state ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let data: Partial<AdminStateFileV1>;
  try {
    data = JSON.parse(text) as Partial<AdminStateFileV1>;
  } catch {
    throw new AdminStateError(`proxy admin state ${file} is not JSON: fix it or delete it (every instance then starts enabled)`);
  }
  const out = new Map<string, PersistedState>();
  if (data?.version !== 1 || typeof data.instances !== 'object' || data.instances === null) {
    throw new AdminStateError(`proxy admin state ${file} is not a version-1 state file: fix it or delete it (every instance then starts enabled)`);
  }
  for (const [name, state] of Object.entries(data.instances)) {
    if (state !== 'draining' && state !== 'disabled') {
      throw new AdminStateError(`proxy admin state ${file}: instance "${name}" has state ${JSON.stringify(state)} (expected "draining" or "disabled"): fix it or delete it`);
    }
    out.set(name, state);
  }
  return out;
}

/**
 * Write the admin state atomically: a temporary file in `dir`, fsync, rename over `admin-state.json`
 * (a crash leaves the old file or the new one, never half of one). Creates `dir` (mode 0700).
 * @param dir the state directory. @param instances every instance's current state; `enabled` ones are
 *   left out of the file.
 * @throws the file system's error (e.g. EACCES, ENOSPC); the caller must not apply the change then.
 */
export function writeAdminState(dir: string, instances: Iterable<{ name: string; state: InstanceState }>): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const body: AdminStateFileV1 = { version: 1, written_at: new Date().toISOString(), instances: {} };
  for (const i of instances) if (i.state !== 'enabled') body.instances[i.name] = i.state;
  const file = join(dir, ADMIN_STATE_FILE);
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(body, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
