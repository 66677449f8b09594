/**
 * Sessions shared by every instance, in one Redis server (`SESSION_STORE=redis`, `REDIS_URL`).
 * A session created through one instance is served by any other, also after the first is gone.
 *
 * Layout (prefix P = REDIS_KEY_PREFIX, default "lockstep:"):
 * - `P session:<id>`  hash {upload: <upload id>, created_at}: the session record.
 * - `P upload:<uid>`  hash {<file name>: bytes}: the session's data (CSV, parsed table, analysis).
 * Both carry the idle time as TTL (PEXPIRE), renewed together each time the session is used, so
 * Redis itself expires idle sessions: no sweeper, no copy loop between instances.
 *
 * Consistency: an upload's files are written under a fresh upload key and the session record
 * pointing at it is created in the same Lua script (atomic in Redis), so a session never exists
 * without all its data, and two uploads never write into one key. Every read and write resolves
 * the session's pointer and touches the data inside one script, so it sees one upload whole.
 * Ids are UUIDv4 made here; a client-sent id is only looked up, never created.
 * Size bound: the total bytes of one session's files are at most SESSION_MAX_BYTES; an upload
 * over it is refused (413 SESSION_TOO_LARGE) before anything is written. One Redis server (no
 * cluster: the scripts touch the upload key they read from the session record).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { v4 as uuidv4 } from 'uuid';
import { AppError } from './errors.ts';
import { isUuidV4, notFound, parseSessionJson, safeName, type SessionFile, type SessionStore } from './sessions.ts';

/** KEYS[1] upload key, KEYS[2] session key; ARGV ttl ms, upload id, created_at, name/value pairs. */
const CREATE = `
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'upload', ARGV[2], 'created_at', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1`;

/** KEYS[1] session key; ARGV ttl ms, upload key prefix. @returns 1 when the session lives. */
const TOUCH = `
local up = redis.call('HGET', KEYS[1], 'upload')
if not up then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', ARGV[2] .. up, ARGV[1])
return 1`;

/** KEYS[1] session key; ARGV upload key prefix, file name. @returns the bytes, or nil. */
const READ = `
local up = redis.call('HGET', KEYS[1], 'upload')
if not up then return false end
return redis.call('HGET', ARGV[1] .. up, ARGV[2])`;

/**
 * KEYS[1] session key; ARGV upload key prefix, file name, bytes, bound.
 * @returns 1 written, -1 no such session, -2 the session would exceed the bound (nothing written).
 */
const WRITE = `
local up = redis.call('HGET', KEYS[1], 'upload')
if not up then return -1 end
local k = ARGV[1] .. up
local total = string.len(ARGV[3])
for _, f in ipairs(redis.call('HKEYS', k)) do
  if f ~= ARGV[2] then total = total + redis.call('HSTRLEN', k, f) end
end
if total > tonumber(ARGV[4]) then return -2 end
redis.call('HSET', k, ARGV[2], ARGV[3])
return 1`;

/** KEYS[1] session key; ARGV upload key prefix. @returns 1 deleted, 0 none. */
const DELETE = `
local up = redis.call('HGET', KEYS[1], 'upload')
if not up then return 0 end
redis.call('DEL', KEYS[1], ARGV[1] .. up)
return 1`;

interface SessionCommands {
  lsCreate(upload: string, session: string, ...args: Array<string | Buffer>): Promise<number>;
  lsTouch(session: string, ttl: string, prefix: string): Promise<number>;
  lsReadBuffer(session: string, prefix: string, name: string): Promise<Buffer | null>;
  lsWrite(session: string, prefix: string, name: string, content: string | Buffer, bound: string): Promise<number>;
  lsDelete(session: string, prefix: string): Promise<number>;
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable REDIS_URL)';
  }
}

export interface RedisStoreOptions {
  /** redis://[user:pass@]host:port[/db] */
  url: string;
  /** Session idle time = the keys' TTL, ms. */
  idleMs: number;
  /** Largest total size of one session's files, bytes. */
  maxBytes: number;
  /** Prefix of every key, e.g. "lockstep:". */
  prefix: string;
}

/** Sessions in Redis; see the file comment for the layout and the rules. */
export class RedisSessionStore implements SessionStore {
  readonly mode = 'redis' as const;
  private readonly redis: Redis & SessionCommands;

  constructor(private readonly options: RedisStoreOptions) {
    const redis = new Redis(options.url, {
      lazyConnect: true,
      // A request waits for a lost Redis for a bounded time, then fails with 503 (never hangs).
      maxRetriesPerRequest: 2,
      connectTimeout: 5_000,
    });
    redis.defineCommand('lsCreate', { numberOfKeys: 2, lua: CREATE });
    redis.defineCommand('lsTouch', { numberOfKeys: 1, lua: TOUCH });
    redis.defineCommand('lsRead', { numberOfKeys: 1, lua: READ });
    redis.defineCommand('lsWrite', { numberOfKeys: 1, lua: WRITE });
    redis.defineCommand('lsDelete', { numberOfKeys: 1, lua: DELETE });
    // Errors surface on the requests that need Redis; the event only must not crash the process.
    redis.on('error', () => undefined);
    this.redis = redis as Redis & SessionCommands;
  }

  private key(kind: 'session' | 'upload', id: string): string {
    return `${this.options.prefix}${kind}:${id}`;
  }

  private get uploadPrefix(): string {
    return `${this.options.prefix}upload:`;
  }

  /** Run one Redis call; a connection failure becomes 503 SESSION_STORE_UNAVAILABLE. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof AppError) throw e;
      throw new AppError(503, 'SESSION_STORE_UNAVAILABLE', `the shared session store (Redis at ${redactUrl(this.options.url)}) failed to ${what}: ${(e as Error).message}`);
    }
  }

  /** Connect and check Redis answers. @throws Error naming the (redacted) URL when it does not. */
  async init(): Promise<void> {
    try {
      await this.redis.connect();
      await this.redis.ping();
    } catch (e) {
      this.redis.disconnect();
      throw new Error(`SESSION_STORE=redis: cannot reach ${redactUrl(this.options.url)}: ${(e as Error).message}`);
    }
  }

  /**
   * Create a session: its files under a fresh upload key and the record pointing at it, in one
   * script. @throws AppError 413 SESSION_TOO_LARGE over the bound (nothing written), 503 when Redis fails.
   */
  async create(files: SessionFile[]): Promise<string> {
    const args: Array<string | Buffer> = [];
    let total = 0;
    for (const f of files) {
      const bytes = typeof f.content === 'string' ? Buffer.from(f.content, 'utf8') : Buffer.from(f.content);
      total += bytes.length;
      args.push(safeName(f.name), bytes);
    }
    if (total > this.options.maxBytes) throw tooLarge(total, this.options.maxBytes);
    for (;;) {
      const id = uuidv4();
      const uploadId = randomBytes(16).toString('hex');
      const created = await this.call('create a session', () =>
        this.redis.lsCreate(this.key('upload', uploadId), this.key('session', id), String(this.options.idleMs), uploadId, new Date().toISOString(), ...args),
      );
      // 0 only if a fresh UUIDv4 collided with a live session: take another.
      if (created === 1) return id;
    }
  }

  /** A live session's id (its TTL renewed, record and data together, in one script), or null. */
  async resolve(candidate: unknown): Promise<string | null> {
    if (!isUuidV4(candidate)) return null;
    const live = await this.call('read a session', () => this.redis.lsTouch(this.key('session', candidate), String(this.options.idleMs), this.uploadPrefix));
    return live === 1 ? candidate : null;
  }

  /** One file of the session, read with its pointer in one script. @throws ENOENT when absent, 503 when Redis fails. */
  async readFile(id: string, name: string): Promise<Buffer> {
    const bytes = await this.call('read a session', () => this.redis.lsReadBuffer(this.key('session', id), this.uploadPrefix, safeName(name)));
    if (bytes === null) throw notFound(`session file ${name}`);
    return bytes;
  }

  /** One JSON file of the session, parsed. @returns null when absent. */
  async readJson<T>(id: string, name: string): Promise<T | null> {
    return parseSessionJson<T>(() => this.readFile(id, name));
  }

  /** @throws ENOENT for an unknown session, AppError 413 when the session would exceed the bound. */
  async writeFile(id: string, name: string, content: string | Uint8Array): Promise<void> {
    const bytes = typeof content === 'string' ? content : Buffer.from(content);
    const r = await this.call('write a session', () => this.redis.lsWrite(this.key('session', id), this.uploadPrefix, safeName(name), bytes, String(this.options.maxBytes)));
    if (r === -1) throw notFound(`session ${id}`);
    if (r === -2) throw tooLarge(null, this.options.maxBytes);
  }

  /** Delete the session record and its data in one script. @returns false when there was none. */
  async delete(id: string): Promise<boolean> {
    if (!isUuidV4(id)) return false;
    return (await this.call('delete a session', () => this.redis.lsDelete(this.key('session', id), this.uploadPrefix))) === 1;
  }

  /** Redis expires sessions by their TTL: nothing to sweep. */
  async sweep(): Promise<number> {
    return 0;
  }

  /** Close the connection (QUIT, or a hard disconnect when Redis does not answer). */
  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

function tooLarge(total: number | null, max: number): AppError {
  return new AppError(
    413,
    'SESSION_TOO_LARGE',
    `the session's data${total === null ? '' : ` (${total} bytes)`} would exceed the shared session store's bound of ${max} bytes (SESSION_MAX_BYTES); nothing was stored`,
  );
}
