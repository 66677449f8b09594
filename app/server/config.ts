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
 * @throws Error naming the variable when a numeric variable is not an integer in range.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  return {
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
