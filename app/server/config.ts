/**
 * The app's configuration, read once from the environment the deployer sets
 * (docs/ARCHITECTURE.md, "App contract"). Every limit is documented here and in app/README.md.
 */
import { resolve } from 'node:path';

export interface AppConfig {
  /** Bind address. Env HOST, default 127.0.0.1. */
  host: string;
  /** TCP port. Env PORT, default 3000. */
  port: number;
  /** Root of persistent data (sessions live in `<dataDir>/sessions`). Env DATA_DIR, default ./data. */
  dataDir: string;
  /** Instance name reported by /version. Env LOCKSTEP_INSTANCE, default null. */
  instance: string | null;
  /** Largest accepted uploaded file, bytes. Env UPLOAD_MAX_BYTES, default 50 MiB. */
  uploadMaxBytes: number;
  /** Largest total uncompressed size of a zipped shapefile, bytes. Env ZIP_MAX_BYTES, default 200 MiB. */
  zipMaxBytes: number;
  /** Sessions idle longer than this are deleted, seconds. Env SESSION_IDLE_SECONDS, default 86400 (24 h). */
  sessionIdleSeconds: number;
  /** How often expired sessions are swept, seconds. Env SESSION_SWEEP_SECONDS, default 600. */
  sessionSweepSeconds: number;
  /** Log level for pino. Env LOG_LEVEL, default info. */
  logLevel: string;
  /**
   * Directory of hashed assets of other releases (the deployer's asset store), served under
   * /assets/ when this release lacks the file. Env ASSET_FALLBACK_DIR, default none.
   */
  assetFallbackDir: string | null;
  /**
   * Where sessions live: "local" (this instance's DATA_DIR, the default) or "redis" (shared by
   * every instance through REDIS_URL). Env SESSION_STORE.
   */
  sessionStore: 'local' | 'redis';
  /** Redis server for SESSION_STORE=redis, e.g. redis://127.0.0.1:6379/0. Env REDIS_URL (required then). */
  redisUrl: string | null;
  /** Prefix of every Redis key the app writes. Env REDIS_KEY_PREFIX, default "lockstep:". */
  redisKeyPrefix: string;
  /**
   * Largest total size of one session's stored data in Redis (the CSV, its parsed table, the
   * boundaries, the analysis), bytes. Over it an upload is refused with 413 and nothing is
   * written. Env SESSION_MAX_BYTES, default 32 MiB. Only the Redis store is bounded.
   */
  sessionMaxBytes: number;
  /**
   * Names of further environment variables that belong to the app's configuration (the
   * inventory's `app.env` keys, comma-separated), hashed into the config fingerprint.
   * Env LOCKSTEP_APP_ENV_KEYS, default none.
   */
  appEnvKeys: string[];
}

function intFromEnv(env: NodeJS.ProcessEnv, key: string, fallback: number, min: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${key} must be an integer >= ${min}, got "${raw}"`);
  }
  return value;
}

/**
 * Build the configuration from environment variables.
 * @param env the environment (default process.env).
 * @returns the configuration with defaults applied; dataDir is absolute.
 * @throws Error naming the variable when a numeric variable is not an integer in range, when
 *   SESSION_STORE is neither "local" nor "redis", or when it is "redis" without REDIS_URL.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const store = env.SESSION_STORE || 'local';
  if (store !== 'local' && store !== 'redis') throw new Error(`SESSION_STORE must be "local" or "redis", got "${store}"`);
  const redisUrl = env.REDIS_URL || null;
  if (store === 'redis' && !redisUrl) throw new Error('SESSION_STORE=redis needs REDIS_URL (e.g. redis://127.0.0.1:6379/0)');
  return {
    sessionStore: store,
    redisUrl,
    redisKeyPrefix: env.REDIS_KEY_PREFIX ?? 'lockstep:',
    sessionMaxBytes: intFromEnv(env, 'SESSION_MAX_BYTES', 32 * 1024 * 1024, 1),
    appEnvKeys: (env.LOCKSTEP_APP_ENV_KEYS ?? '').split(',').map((k) => k.trim()).filter(Boolean),
    host: env.HOST || '127.0.0.1',
    port: intFromEnv(env, 'PORT', 3000, 0),
    dataDir: resolve(env.DATA_DIR || './data'),
    instance: env.LOCKSTEP_INSTANCE || null,
    uploadMaxBytes: intFromEnv(env, 'UPLOAD_MAX_BYTES', 50 * 1024 * 1024, 1),
    zipMaxBytes: intFromEnv(env, 'ZIP_MAX_BYTES', 200 * 1024 * 1024, 1),
    sessionIdleSeconds: intFromEnv(env, 'SESSION_IDLE_SECONDS', 24 * 3600, 1),
    sessionSweepSeconds: intFromEnv(env, 'SESSION_SWEEP_SECONDS', 600, 1),
    logLevel: env.LOG_LEVEL || 'info',
    assetFallbackDir: env.ASSET_FALLBACK_DIR ? resolve(env.ASSET_FALLBACK_DIR) : null,
  };
}
