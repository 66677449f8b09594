/**
 * The Fastify application: plugins, routes and the one place that turns errors into JSON.
 * `buildApp` does not listen, so tests and the entry point share it.
 */
import { existsSync } from 'node:fs';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import cookie from '@fastify/cookie';
import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import type { AppConfig } from './config.ts';
import { AppError, errorBody } from './errors.ts';
import type { ReleaseInfo } from './release.ts';
import { DiskSessionStore, type SessionStore } from './sessions.ts';
import { RedisSessionStore } from './redis-sessions.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerUploadRoutes } from './routes/upload.ts';
import { registerSessionRoutes } from './routes/session.ts';
import { registerAnalysisRoutes } from './routes/analysis.ts';
import { registerMapRoutes } from './routes/map.ts';

export interface AppOptions {
  config: AppConfig;
  release: ReleaseInfo;
  /** Directory of the built frontend (served at `/`); skipped when it does not exist. */
  publicDir: string | null;
  /** ISO time the process started, reported by /version. */
  startedAt: string;
}

/** Upstream keep-alive idle time, ms. The proxy keeps its own idle timeout below this. */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/**
 * Create the app with every route registered.
 * @returns the Fastify instance (not listening) and its session store.
 * @throws the fs error when the data directory cannot be created; Error when SESSION_STORE=redis
 *   and Redis cannot be reached.
 */
export async function buildApp(options: AppOptions): Promise<{ app: FastifyInstance; store: SessionStore }> {
  const { config } = options;
  const app = Fastify({
    logger: { level: config.logLevel },
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    // Node requires the header timeout to outlast keep-alive, or idle sockets can be cut mid-request.
    http: { headersTimeout: KEEP_ALIVE_TIMEOUT_MS + 1000 } as never,
  });
  const store = createSessionStore(config);
  await store.init();
  app.addHook('onClose', async () => store.close());

  await app.register(cookie);
  await app.register(multipart, {
    limits: { fileSize: config.uploadMaxBytes, files: 4, fields: 20, parts: 30 },
  });

  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    if (err instanceof AppError) return reply.code(err.statusCode).send(errorBody(err));
    const known = translateFrameworkError(err, config);
    if (known) return reply.code(known.statusCode).send(errorBody(known));
    request.log.error({ err }, 'request failed');
    return reply.code(500).send({ status: 'error', code: 'INTERNAL', message: 'internal error; see the server log' });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ status: 'error', code: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );
  app.addHook('onSend', async (_request, reply, payload) => {
    // Session answers are private to one user: no shared cache may keep or reuse them.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    // The frontend is one same-origin bundle: nothing else may run, frame it or be fetched.
    reply.header('content-security-policy', "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'self'");
    return payload;
  });

  registerHealthRoutes(app, options);
  registerUploadRoutes(app, store, config);
  registerSessionRoutes(app, store);
  registerAnalysisRoutes(app, store);
  registerMapRoutes(app, store);

  const hasPublic = !!options.publicDir && existsSync(options.publicDir);
  if (hasPublic || config.assetFallbackDir) {
    await app.register(fastifyStatic, {
      root: hasPublic ? options.publicDir! : config.assetFallbackDir!,
      serve: hasPublic,
      prefix: '/',
      wildcard: false,
      // Our own Cache-Control below, not @fastify/static's default max-age=0.
      cacheControl: false,
      // No validators from file stats: every release is unpacked with the same fixed mtime (one
      // digest, one artifact), so a stat ETag (size + mtime) or Last-Modified would answer 304 to
      // a browser holding the previous release's index.html when the new one has the same size
      // (Vite's hashed names keep it the same size). index.html is small and always sent whole;
      // hashed assets are immutable and never revalidated.
      etag: false,
      lastModified: false,
      setHeaders(res, path) {
        // Vite names assets by content hash: a name never changes meaning, so cache it for good.
        if (/[\\/]assets[\\/]/.test(path)) res.setHeader('cache-control', 'public, max-age=31536000, immutable');
        else res.setHeader('cache-control', 'no-cache');
      },
    });
  }
  if (config.assetFallbackDir) registerAssetFallback(app, config.assetFallbackDir);
  return { app, store };
}

/**
 * The session store the configuration names: the instance's disk (default) or the shared Redis.
 * @returns a store not yet initialised.
 */
export function createSessionStore(config: AppConfig): SessionStore {
  const idleMs = config.sessionIdleSeconds * 1000;
  if (config.sessionStore === 'redis') {
    return new RedisSessionStore({ url: config.redisUrl!, idleMs, maxBytes: config.sessionMaxBytes, prefix: config.redisKeyPrefix });
  }
  return new DiskSessionStore(config.dataDir, idleMs);
}

/** Asset paths served from the fallback dir: plain names only (no `..`, no dot files). */
const FALLBACK_ASSET = /^(?:[A-Za-z0-9_~@+-][A-Za-z0-9._~@+-]*\/)*[A-Za-z0-9_~@+-][A-Za-z0-9._~@+-]*$/;

/**
 * GET /assets/* for names this release does not have: served from `dir`, the deployer's asset
 * store holding the hashed assets of every release in the retention window (docs/ARCHITECTURE.md,
 * "App contract"). The release's own files are routed first (one static route per file), so the
 * store only answers for assets of other releases: a page built by another release, or an old
 * tab's lazy chunk. Hashed names never change meaning, so the answer is cacheable for good.
 */
function registerAssetFallback(app: FastifyInstance, dir: string): void {
  app.get('/assets/*', (request, reply) => {
    const rel = (request.params as { '*': string })['*'];
    if (!FALLBACK_ASSET.test(rel)) return reply.callNotFound();
    reply.header('cache-control', 'public, max-age=31536000, immutable');
    return reply.sendFile(rel, dir);
  });
}

function translateFrameworkError(err: FastifyError, config: AppConfig): AppError | null {
  switch (err.code) {
    case 'FST_REQ_FILE_TOO_LARGE':
      return new AppError(413, 'FILE_TOO_LARGE', `a file is larger than the upload limit of ${config.uploadMaxBytes} bytes (UPLOAD_MAX_BYTES)`);
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new AppError(413, 'TOO_MANY_PARTS', 'the upload has too many files or fields');
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new AppError(415, 'NOT_MULTIPART', 'send the upload as multipart/form-data');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError(413, 'BODY_TOO_LARGE', 'the request body is too large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError(415, 'UNSUPPORTED_MEDIA_TYPE', `unsupported content type`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError(400, 'BAD_JSON', 'the request body is not valid JSON');
    default:
      if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
        return new AppError(err.statusCode, err.code ?? 'BAD_REQUEST', err.message);
      }
      return null;
  }
}
