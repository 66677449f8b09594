/**
 * The config fingerprint /version reports: sha256 over the instance's effective configuration
 * and secrets, so `lockstep drift` can tell two instances configured differently apart without
 * any value leaving the instance. Only the hash is ever reported.
 *
 * Hashed: the session store mode, REDIS_URL (password included), REDIS_KEY_PREFIX, every limit
 * (UPLOAD_MAX_BYTES, ZIP_MAX_BYTES, SESSION_MAX_BYTES, SESSION_IDLE_SECONDS,
 * SESSION_SWEEP_SECONDS), the secrets in FINGERPRINT_ENV, and every variable named in
 * LOCKSTEP_APP_ENV_KEYS (the inventory's `app.env` keys, the same on every instance).
 * Not hashed: what differs per instance by design (HOST, PORT, DATA_DIR, LOCKSTEP_INSTANCE,
 * ASSET_FALLBACK_DIR, LOG_DIR, RUN_DIR), and what the shell that started the process happens to
 * carry (LOG_LEVEL, NODE_ENV, TZ...): hashing ambient variables would flag an instance restarted by
 * hand from another shell, not a configuration that differs.
 */
import { createHash } from 'node:crypto';
import type { AppConfig } from './config.ts';

/** Secrets hashed whenever they are set, also when the inventory does not name them. */
export const FINGERPRINT_ENV = ['SESSION_SECRET'] as const;

/**
 * The fingerprint of a configuration.
 * @param config the loaded configuration. @param env the environment it came from.
 * @returns `sha256:<64 hex>`; equal configurations give equal fingerprints whatever the key order.
 */
export function configFingerprint(config: AppConfig, env: NodeJS.ProcessEnv = process.env): string {
  const vars: Record<string, string | null> = {};
  for (const k of [...FINGERPRINT_ENV, ...config.appEnvKeys].sort()) vars[k] = env[k] ?? null;
  const effective = {
    session_store: config.sessionStore,
    redis_url: config.redisUrl,
    redis_key_prefix: config.redisKeyPrefix,
    session_max_bytes: config.sessionMaxBytes,
    upload_max_bytes: config.uploadMaxBytes,
    zip_max_bytes: config.zipMaxBytes,
    session_idle_seconds: config.sessionIdleSeconds,
    session_sweep_seconds: config.sessionSweepSeconds,
    env: vars,
  };
  return `sha256:${createHash('sha256').update(JSON.stringify(effective)).digest('hex')}`;
}
