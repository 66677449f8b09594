/**
 * Entry point of the analysis app (bundled to `dist/server/index.mjs`). Reads the environment
 * (HOST, PORT, DATA_DIR, LOCKSTEP_INSTANCE, ASSET_FALLBACK_DIR, limits: see config.ts), reads the release identity
 * from the release root's manifest.json, listens, and shuts down cleanly on SIGTERM/SIGINT.
 */
import { join } from 'node:path';
import { buildApp } from './app.ts';
import { loadConfig } from './config.ts';
import { readReleaseInfo, releaseRootOf } from './release.ts';

async function main(): Promise<void> {
  const config = loadConfig();
  const releaseRoot = releaseRootOf(import.meta.url);
  const release = readReleaseInfo(releaseRoot);
  const { app, store } = await buildApp({
    config,
    release,
    publicDir: join(releaseRoot, 'public'),
    startedAt: new Date().toISOString(),
  });

  const sweep = setInterval(() => {
    store.sweep().then(
      (n) => n > 0 && app.log.info({ deleted: n }, 'expired sessions deleted'),
      (err: unknown) => app.log.error({ err }, 'session sweep failed'),
    );
  }, config.sessionSweepSeconds * 1000);
  sweep.unref();

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'shutting down');
    clearInterval(sweep);
    // Keep-alive connections (the proxy's pool) that go idle while in-flight requests finish are
    // closed at once: without this the process waited for them until the service's KILL.
    const idle = setInterval(() => app.server.closeIdleConnections(), 100);
    idle.unref();
    app.server.closeIdleConnections();
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));

  await app.listen({ host: config.host, port: config.port });
  app.log.info({ release: release.release, digest: release.digest, instance: config.instance }, 'ready');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
