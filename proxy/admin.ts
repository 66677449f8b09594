/**
 * The admin API, on its own listener (loopback by default; HTTPS when given a certificate, which is
 * required off loopback, see config.ts), every route behind a bearer token sent in the
 * `Authorization` header (a token in the URL is refused: URLs end up in logs and shell history).
 * Contract: docs/ARCHITECTURE.md, "Proxy admin API".
 *
 *   GET  /admin/instances                                  -> {instances: [{name, url, state, healthy, inflight}]}
 *   POST /admin/instances/<name>/drain[?wait=1&timeout_ms=N] -> {name, state, drained, inflight}
 *   POST /admin/instances/<name>/enable | /disable           -> {name, url, state, healthy, inflight}
 *   POST /admin/reload                                     -> {added, removed, instances} (when a reloader is set)
 *   GET  /admin/rollout                                    -> {rollout: {release, holder, done, total, operation?, phase?, at, expires} | null}
 *   POST /admin/rollout  JSON {release, holder, done, total, operation?, phase?, ttl_ms?} -> {rollout}
 *   DELETE /admin/rollout                                  -> {rollout: null}   (the rollout ended)
 *   GET  /metrics                                          -> Prometheus text
 *
 * The fleet dashboard (`/`, `/dashboard/...`, see dashboard.ts) shares the listener: its paths go to
 * a Fastify instance with its routes, everything else to the hand-written router here, which never
 * reads a cookie. The dashboard has its own sign-in; its session cookie opens only its read-only routes.
 */
import http from 'node:http';
import https from 'node:https';
import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import type { Logger } from 'pino';
import { createDashboard } from './dashboard.ts';
import type { AdminControl } from './control.ts';
import { MAX_ROLLOUT_BODY, RolloutBoard, parseRolloutBody } from './rollout-board.ts';

/** Default and upper bound of `timeout_ms` for `drain?wait=1`, ms. */
export const DEFAULT_DRAIN_WAIT_MS = 30_000;
export const MAX_DRAIN_WAIT_MS = 600_000;

export type { AdminControl } from './control.ts';

export interface AdminOptions {
  control: AdminControl;
  /** The admin bearer token (kept only as its sha256). */
  token: string;
  logger: Logger;
  /** The app's version path, for the dashboard. Default `/version`. */
  versionPath?: string;
  /** PEM certificate and key: serve HTTPS. Without it, plain HTTP (loopback only, checked by config.ts). */
  tls?: { cert: Buffer; key: Buffer };
}

/** The admin listener: node:http, or node:https with the same API. */
export type AdminServer = http.Server | https.Server;

/** Query parameters that look like a credential; a request carrying one is refused. */
const TOKEN_PARAMS = new Set(['token', 'access_token', 'admin_token', 'auth', 'authorization', 'bearer', 'key', 'api_key']);

/**
 * True when the URL carries the admin token, or a parameter named like a credential: such an admin
 * API request is refused (401) even with a valid header, so a token pasted into a URL never works.
 */
export function tokenInQuery(params: URLSearchParams, tokenDigest: Buffer): boolean {
  for (const [name, value] of params) {
    if (TOKEN_PARAMS.has(name.toLowerCase())) return true;
    if (timingSafeEqual(tokenDigest, digest(value))) return true;
  }
  return false;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * Check an `Authorization` header against the token in constant time. Both sides are hashed
 * first so `timingSafeEqual` always compares equal-length buffers and the token's length does not leak.
 */
export function bearerMatches(header: string | undefined, tokenDigest: Buffer): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) {
    // Still compare, so a missing header costs the same as a wrong one.
    timingSafeEqual(tokenDigest, digest(''));
    return false;
  }
  return timingSafeEqual(tokenDigest, digest(header.slice(7).trim()));
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, extra: http.OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(text);
}

function parseWait(params: URLSearchParams): { wait: boolean; timeoutMs: number } | string {
  const w = params.get('wait');
  const wait = w === '1' || w === 'true';
  const raw = params.get('timeout_ms');
  if (raw === null) return { wait, timeoutMs: DEFAULT_DRAIN_WAIT_MS };
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > MAX_DRAIN_WAIT_MS) return `timeout_ms must be an integer 0..${MAX_DRAIN_WAIT_MS}`;
  return { wait, timeoutMs: n };
}

/**
 * Build the admin server (not yet listening): an http.Server whose dashboard paths go to a Fastify
 * instance with the dashboard's routes (dashboard.ts) and every other path to the admin API above.
 * Errors inside a handler answer 500, never crash; a malformed request line closes the socket.
 * @returns the server; closing it also ends the dashboard's event streams.
 */
export function createAdminServer(options: AdminOptions): AdminServer {
  const { control, logger } = options;
  const tokenDigest = digest(options.token);
  const board = new RolloutBoard();
  const dashboard = createDashboard({
    control,
    rollout: () => board.current(),
    tokenDigest,
    bearerOk: (req) => bearerMatches(req.headers.authorization, tokenDigest),
    logger,
    versionPath: options.versionPath,
    tls: options.tls !== undefined,
  });

  function fail(res: http.ServerResponse, err: unknown): void {
    logger.error({ err }, 'admin request failed');
    if (!res.headersSent) sendJson(res, 500, { error: 'internal', message: 'admin request failed; see the proxy log' });
    else res.destroy();
  }

  const app = Fastify({
    // The admin API keeps its own routing; the dashboard's paths reach Fastify through here.
    serverFactory: (dashboardHandler) => {
      const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
        req.on('error', () => undefined);
        const url = new URL(req.url ?? '/', 'http://admin');
        if (dashboard.handles(url.pathname)) {
          // Route on the normalised path, as the split above did (`//x`, `/a/../dashboard`).
          req.url = url.pathname + url.search;
          ready.then(() => dashboardHandler(req, res), (err: unknown) => fail(res, err));
          return;
        }
        // Admin requests carry no body we need (but POST /admin/rollout's); drain it so keep-alive stays usable.
        if (url.pathname !== '/admin/rollout') req.resume();
        // The dashboard's pages ignore a token in the URL (its sign-in form is the way in); the API refuses it.
        if (tokenInQuery(url.searchParams, tokenDigest)) {
          logger.warn({ method: req.method, path: url.pathname, from: req.socket.remoteAddress }, 'admin request refused: credential in the URL');
          sendJson(
            res,
            401,
            { error: 'unauthorized', message: 'never put the admin token in the URL (it ends up in logs); send Authorization: Bearer <admin token>' },
            { 'www-authenticate': 'Bearer' },
          );
          return;
        }
        route(req, res, url).catch((err: unknown) => fail(res, err));
      };
      // https.Server has node:http's API (listen, close*Connections); Fastify only wires the handler.
      return (options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler) : http.createServer(handler)) as http.Server;
    },
    clientErrorHandler: (_err, socket) => socket.destroy(),
  });
  void app.register(dashboard.plugin);
  const ready = new Promise<void>((resolve, reject) => void app.ready((err) => (err ? reject(err) : resolve())));
  ready.catch((err: unknown) => logger.error({ err }, 'admin dashboard failed to start'));

  async function route(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const path = url.pathname;
    if (!bearerMatches(req.headers.authorization, tokenDigest)) {
      req.resume();
      logger.warn({ method: req.method, path: req.url?.split('?')[0], from: req.socket.remoteAddress }, 'admin request refused: bad or missing token');
      sendJson(res, 401, { error: 'unauthorized', message: 'send Authorization: Bearer <admin token>' }, { 'www-authenticate': 'Bearer' });
      return;
    }
    if (path === '/metrics') {
      if (req.method !== 'GET') return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'GET' });
      const { contentType, text } = await control.metrics();
      res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
      res.end(text);
      return;
    }
    if (path === '/admin/instances') {
      if (req.method !== 'GET') return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'GET' });
      return sendJson(res, 200, { instances: await control.instances() });
    }
    if (path === '/admin/reload') {
      if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'POST' });
      if (!control.reload) return sendJson(res, 501, { error: 'not_supported', message: 'this proxy was started with a fixed upstream list' });
      const changes = await control.reload();
      return sendJson(res, 200, { ...changes, instances: await control.instances() });
    }
    if (path === '/admin/rollout') return rolloutRoute(req, res);
    const m = /^\/admin\/instances\/([^/]+)\/(drain|enable|disable)$/.exec(path);
    if (!m) return sendJson(res, 404, { error: 'not_found', message: `no admin route ${path}` });
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'POST' });
    const name = decodeURIComponent(m[1]!);
    const action = m[2] as 'drain' | 'enable' | 'disable';
    const unknown = (): void => sendJson(res, 404, { error: 'unknown_instance', message: `no instance named "${name}"` });
    if (action === 'drain') {
      const wait = parseWait(url.searchParams);
      if (typeof wait === 'string') return sendJson(res, 400, { error: 'bad_request', message: wait });
      const result = await control.drain(name, wait.wait ? wait.timeoutMs : null);
      if (!result) return unknown();
      if (wait.wait) logger.info({ instance: name, ...result }, result.drained ? 'instance drained' : 'drain wait timed out');
      return sendJson(res, 200, { name, state: result.state, drained: result.drained, inflight: result.inflight });
    }
    const status = await control.setState(name, action === 'enable' ? 'enabled' : 'disabled');
    if (!status) return unknown();
    return sendJson(res, 200, status);
  }

  /** GET, POST (announce) and DELETE (clear) the rollout in progress; see rollout-board.ts. */
  async function rolloutRoute(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method === 'GET') return sendJson(res, 200, { rollout: board.current() });
    if (req.method === 'DELETE') {
      req.resume();
      board.clear();
      logger.info('rollout ended (announcement cleared)');
      return sendJson(res, 200, { rollout: null });
    }
    if (req.method !== 'POST') {
      req.resume();
      return sendJson(res, 405, { error: 'method_not_allowed' }, { allow: 'GET, POST, DELETE' });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > MAX_ROLLOUT_BODY) return sendJson(res, 413, { error: 'too_large', message: `at most ${MAX_ROLLOUT_BODY} bytes` }, { connection: 'close' });
      chunks.push(c);
    }
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return sendJson(res, 400, { error: 'bad_request', message: 'the body is not JSON' });
    }
    const parsed = parseRolloutBody(body);
    if (typeof parsed === 'string') return sendJson(res, 400, { error: 'bad_request', message: parsed });
    const first = board.current() === null;
    board.announce(parsed.rollout, parsed.ttlMs);
    if (first) logger.info({ rollout: parsed.rollout }, 'rollout announced');
    return sendJson(res, 200, { rollout: board.current() });
  }

  const server = app.server;
  server.on('close', () => {
    dashboard.close();
    // Not listening through Fastify, so this only runs its onClose hooks; it never closes `server`.
    app.close().catch((err: unknown) => logger.warn({ err }, 'admin dashboard did not close cleanly'));
  });
  return server;
}
