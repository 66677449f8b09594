/**
 * What an instance's app is told and what it reports: the service environment of the app
 * contract (docs/ARCHITECTURE.md, "App contract") and the shape of its `/version` answer.
 */
import type { Instance, Inventory } from '../../config/inventory.ts';
import type { Layout } from '../remote/layout.ts';

/** What `/version` reported. */
export interface VersionInfo {
  release?: string;
  digest?: string | null;
  instance?: string;
  pid?: number;
  started_at?: string;
  /** "local" | "redis": where the app keeps sessions. */
  session_store?: string;
  /** sha256 of the app's effective configuration and secrets (never a value). */
  config_fingerprint?: string;
}

/**
 * The app-contract environment for service commands on this instance (docs/ARCHITECTURE.md),
 * then, with `app`, the session store (SESSION_STORE, REDIS_URL) and the inventory's `app.env`
 * with LOCKSTEP_APP_ENV_KEYS naming its keys (hashed into the app's config fingerprint). The
 * contract variables come first: transports log only a command's first line, never a secret.
 */
export function serviceEnv(instance: Instance, layout: Layout, extra: Record<string, string> = {}, app?: Inventory['app']): Record<string, string> {
  const appEnv: Record<string, string> = {};
  if (app) {
    appEnv.SESSION_STORE = app.session_store;
    if (app.session_store === 'redis' && app.redis_url) appEnv.REDIS_URL = app.redis_url;
    Object.assign(appEnv, app.env);
    appEnv.LOCKSTEP_APP_ENV_KEYS = Object.keys(app.env).sort().join(',');
  }
  return {
    HOST: instance.appAddress,
    PORT: String(instance.appPort),
    DATA_DIR: `${layout.shared}/data`,
    LOG_DIR: `${layout.shared}/logs`,
    RUN_DIR: `${layout.shared}/run`,
    LOCKSTEP_INSTANCE: instance.name,
    LOCKSTEP_RELEASE_DIR: layout.current,
    // Hashed assets of every release in the retention window (fleet/assets.ts).
    ASSET_FALLBACK_DIR: layout.assets,
    ...extra,
    ...appEnv,
  };
}
