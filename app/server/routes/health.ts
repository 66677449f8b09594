/** Liveness, readiness and identity routes used by the proxy and the deployer. */
import type { FastifyInstance } from 'fastify';
import type { AppOptions } from '../app.ts';
import { configFingerprint } from '../fingerprint.ts';

/** Register `GET /healthz`, `GET /version` and the incident app's `GET /ping`. */
export function registerHealthRoutes(app: FastifyInstance, options: AppOptions): void {
  // Computed once: /version answers what this process started with, whatever `current` says now.
  const version = {
    release: options.release.release,
    digest: options.release.digest,
    instance: options.config.instance,
    pid: process.pid,
    started_at: options.startedAt,
    /** Where sessions live: "local" (this instance) or "redis" (shared by the fleet). */
    session_store: options.config.sessionStore,
    /** sha256 of the effective configuration and secrets (fingerprint.ts); never a value. */
    config_fingerprint: configFingerprint(options.config),
  };
  // The proxy polls these every second or so: logging each request would bury the log.
  const quiet = { logLevel: 'warn' as const };
  app.get('/healthz', quiet, async () => ({ status: 'ok' }));
  app.get('/version', quiet, async () => version);
  app.get('/ping', quiet, async () => ({ status: 'ok', message: 'pong' }));
}
