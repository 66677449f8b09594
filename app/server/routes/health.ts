/** Liveness, readiness and identity routes used by the proxy and the deployer. */
import type { FastifyInstance } from 'fastify';
import type { AppOptions } from '../app.ts';

/** Register `GET /healthz`, `GET /version` and the incident app's `GET /ping`. */
export function registerHealthRoutes(app: FastifyInstance, options: AppOptions): void {
  // Computed once: /version answers what this process started with, whatever `current` says now.
  const version = {
    release: options.release.release,
    digest: options.release.digest,
    instance: options.config.instance,
    pid: process.pid,
    started_at: options.startedAt,
  };
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/version', async () => version);
  app.get('/ping', async () => ({ status: 'ok', message: 'pong' }));
}
