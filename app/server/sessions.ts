/**
 * Per-session storage under `<dataDir>/sessions/<uuid>/`. The data directory is the instance's
 * shared directory, so sessions survive a release switch and a restart.
 *
 * Isolation rules (the incident, INCIDENT.md): ids are made here with uuid v4 and nowhere else;
 * a client can only *name* an existing session through its cookie, and a name is accepted only
 * when it is a canonical lowercase UUIDv4 and that directory exists and has not expired.
 * A session is created atomically: its files are written into a temporary directory which is
 * then renamed into place, so a failed upload leaves no half-written session behind.
 */
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { v4 as uuidv4 } from 'uuid';

/** Canonical lowercase UUIDv4 (version nibble 4, RFC 4122 variant). */
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Temporary directories older than this are leftovers of a crashed upload, ms. */
const STALE_TMP_MS = 3600_000;

/**
 * True when `value` is a canonical lowercase UUIDv4 string. Used before a cookie value is
 * ever joined into a path, so it also rules out path traversal.
 */
export function isUuidV4(value: unknown): value is string {
  return typeof value === 'string' && UUID_V4.test(value);
}

/** One file to store in a new session: a plain file name (no directories) and its bytes. */
export interface SessionFile {
  name: string;
  content: string | Uint8Array;
}

/**
 * What the routes need from a session store. Two implementations: DiskSessionStore below (the
 * default, per instance, `SESSION_STORE=local`) and RedisSessionStore (redis-sessions.ts, shared
 * by every instance, `SESSION_STORE=redis`). Both make ids themselves (UUIDv4) and accept a
 * client-supplied id only when it names an existing, unexpired session.
 */
export interface SessionStore {
  /** "local" (this instance's disk) or "redis" (shared); reported by /version. */
  readonly mode: 'local' | 'redis';
  /** Prepare the store (directories, connection). @throws when it cannot be used. */
  init(): Promise<void>;
  /**
   * Create a new session holding `files`, atomically (all files or nothing).
   * @returns the new server-generated UUIDv4 id. @throws AppError 413 SESSION_TOO_LARGE when the
   *   store bounds a session's size and the files exceed it (nothing is written).
   */
  create(files: SessionFile[]): Promise<string>;
  /** A cookie value to a live session id (and mark it used), or null. Never creates a session. */
  resolve(candidate: unknown): Promise<string | null>;
  /** One file of a session. @throws an error with code ENOENT when it does not exist. */
  readFile(id: string, name: string): Promise<Buffer>;
  /** One JSON file of a session, parsed. @returns null when it does not exist. */
  readJson<T>(id: string, name: string): Promise<T | null>;
  /** Replace one file of an existing session atomically. */
  writeFile(id: string, name: string, content: string | Uint8Array): Promise<void>;
  /** Delete a session and all its data (sign-out). @returns false when there was none. */
  delete(id: string): Promise<boolean>;
  /** Delete expired sessions (a store with its own expiry returns 0). @returns how many. */
  sweep(now?: number): Promise<number>;
  /** Release connections; the store is unusable afterwards. */
  close(): Promise<void>;
}

/** An error whose `code` is ENOENT: a session file that does not exist, in either store. */
export function notFound(what: string): NodeJS.ErrnoException {
  const e = new Error(`${what} does not exist`) as NodeJS.ErrnoException;
  e.code = 'ENOENT';
  return e;
}

/** The sessions of one data directory: create atomically, resolve a cookie, expire, sweep. */
/**
 * One JSON file of a session, parsed, for every store: `read` gives its bytes (UTF-8).
 * @returns null when the file (or the session) does not exist (`read` throws ENOENT).
 * @throws a SyntaxError for a file that is not JSON, and any other error of `read`.
 */
export async function parseSessionJson<T>(read: () => Promise<Buffer>): Promise<T | null> {
  try {
    return JSON.parse((await read()).toString('utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

export class DiskSessionStore implements SessionStore {
  readonly mode = 'local' as const;
  readonly root: string;
  private readonly tmpRoot: string;

  /**
   * @param dataDir absolute data directory; sessions go to `<dataDir>/sessions`.
   * @param idleMs a session not used for this long is expired (treated as unknown, then deleted).
   */
  constructor(
    dataDir: string,
    private readonly idleMs: number,
  ) {
    this.root = join(dataDir, 'sessions');
    // Inside the sessions directory so the final rename never crosses a file system.
    this.tmpRoot = join(this.root, '.tmp');
  }

  /** Create the storage directories. @throws the fs error when they cannot be created. */
  async init(): Promise<void> {
    await mkdir(this.tmpRoot, { recursive: true });
  }

  /**
   * Create a new session holding `files`, atomically.
   * @returns the new server-generated UUIDv4 session id.
   * @throws the fs error; nothing is left under the sessions directory in that case.
   */
  async create(files: SessionFile[]): Promise<string> {
    const id = uuidv4();
    const tmp = join(this.tmpRoot, `${id}.${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(tmp, { recursive: false });
      for (const file of files) await writeFile(join(tmp, safeName(file.name)), file.content);
      await rename(tmp, join(this.root, id));
    } catch (e) {
      await rm(tmp, { recursive: true, force: true });
      throw e;
    }
    return id;
  }

  /**
   * Resolve a client-supplied id (from the cookie) to a live session, and mark it used.
   * @returns the id when it is a valid UUIDv4 naming an existing, unexpired session; else null.
   *   An unknown id never becomes a session.
   */
  async resolve(candidate: unknown): Promise<string | null> {
    if (!isUuidV4(candidate)) return null;
    const dir = join(this.root, candidate);
    let mtimeMs: number;
    try {
      const st = await stat(dir);
      if (!st.isDirectory()) return null;
      mtimeMs = st.mtimeMs;
    } catch {
      return null;
    }
    if (Date.now() - mtimeMs > this.idleMs) {
      await rm(dir, { recursive: true, force: true });
      return null;
    }
    const now = new Date();
    await utimes(dir, now, now).catch(() => undefined);
    return candidate;
  }

  /** Read a file of a session. @throws ENOENT when it does not exist. */
  async readFile(id: string, name: string): Promise<Buffer> {
    return readFile(join(this.root, id, safeName(name)));
  }

  /** Read and parse a JSON file of a session. @returns null when the file does not exist. */
  async readJson<T>(id: string, name: string): Promise<T | null> {
    return parseSessionJson<T>(() => this.readFile(id, name));
  }

  /** Replace one file of an existing session atomically (temp file, then rename). */
  async writeFile(id: string, name: string, content: string | Uint8Array): Promise<void> {
    const target = join(this.root, id, safeName(name));
    const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(tmp, content);
      await rename(tmp, target);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /**
   * Delete a session and everything it holds (upload, parsed table, boundaries, analysis):
   * sign-out. Anything that is not a canonical UUIDv4 deletes nothing.
   * @returns true when a session directory existed and was deleted, false when there was none.
   * @throws the fs error when the directory exists but cannot be removed.
   */
  async delete(id: string): Promise<boolean> {
    if (!isUuidV4(id)) return false;
    const dir = join(this.root, id);
    const existed = await stat(dir).then(
      () => true,
      () => false,
    );
    await rm(dir, { recursive: true, force: true });
    return existed;
  }

  /** Nothing to release for the disk store. */
  async close(): Promise<void> {}

  /**
   * Delete sessions idle longer than the idle time, and temporary directories left by uploads
   * that crashed mid-way.
   * @returns the number of sessions deleted.
   */
  async sweep(now = Date.now()): Promise<number> {
    let deleted = 0;
    for (const name of await readdir(this.root).catch(() => [] as string[])) {
      if (!isUuidV4(name)) continue;
      const dir = join(this.root, name);
      const st = await stat(dir).catch(() => null);
      if (st && now - st.mtimeMs > this.idleMs) {
        await rm(dir, { recursive: true, force: true });
        deleted += 1;
      }
    }
    for (const name of await readdir(this.tmpRoot).catch(() => [] as string[])) {
      const dir = join(this.tmpRoot, name);
      const st = await stat(dir).catch(() => null);
      if (st && now - st.mtimeMs > STALE_TMP_MS) await rm(dir, { recursive: true, force: true });
    }
    return deleted;
  }
}

/**
 * A session file name chosen by this code (never by clients).
 * @throws Error for anything path-like.
 */
export function safeName(name: string): string {
  // Session file names are chosen by this code, never by clients; refuse anything path-like.
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(name)) throw new Error(`invalid session file name "${name}"`);
  return name;
}
