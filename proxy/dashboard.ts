/**
 * The fleet dashboard on the admin listener, as Fastify routes. A browser cannot send the admin
 * bearer header, so the page trades the admin token (POSTed in a form body, never in the URL) for a
 * session: a random id kept server-side, sent back in an HttpOnly, SameSite=Strict cookie. That
 * cookie opens only the dashboard's own read-only routes; every other admin route still needs the
 * bearer token (admin.ts never looks at it).
 *
 *   GET  /  or  /dashboard          sign-in form, or the fleet view with a valid session
 *   POST /dashboard/sign-in         form body `token`, `csrf` -> 303 to /dashboard + session cookie; 401 page
 *   POST /dashboard/sign-out        ends the session
 *   GET  /dashboard/events          Server-Sent Events: a `fleet` event (FleetSnapshot JSON) every second
 *   GET  /dashboard/fleet.json      the current FleetSnapshot (session cookie or bearer token)
 *   GET  /dashboard/app.js | app.css, /favicon.ico (204)
 *
 * Cookies: @fastify/cookie. Form body: @fastify/formbody (the only body parser here, 4 KiB at
 * most). CSRF: the session cookie is SameSite=Strict; the sign-in and sign-out POSTs must carry an
 * Origin (or Referer) equal to the listener's own origin, and the sign-in form a token from
 * @fastify/csrf that matches its SameSite=Strict cookie (dashboard-auth.ts).
 */
import type http from 'node:http';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import rateLimit from '@fastify/rate-limit';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { AdminControl } from './control.ts';
import { CsrfTokens, DEFAULT_SESSION_TTL_MS, SessionStore, originOf, sameOrigin, tokenMatches } from './dashboard-auth.ts';
import { FleetEvents, MAX_STREAMS } from './dashboard-events.ts';
import { FleetSampler } from './dashboard-fleet.ts';
import type { RolloutAnnouncement } from './rollout-board.ts';
import { DASHBOARD_CSS, DASHBOARD_JS, fleetPage, signInPage } from './dashboard-page.ts';

export { DEFAULT_SESSION_TTL_MS } from './dashboard-auth.ts';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'lockstep_dashboard';
/**
 * Sign-in attempts (right or wrong) one client address may make per minute; beyond, 429 with
 * Retry-After (by @fastify/rate-limit): the admin token cannot be guessed at network speed.
 */
export const SIGN_IN_ATTEMPTS_PER_MINUTE = 10;

/** Name of the sign-in form's double-submit CSRF cookie. */
export const CSRF_COOKIE = 'lockstep_dashboard_csrf';
/** Upper bound of the sign-in form body, bytes. */
const MAX_FORM_BYTES = 4096;

/** Paths that show the sign-in form or, with a session, the fleet view. */
const PAGES = ['/', '/dashboard', '/dashboard/', '/dashboard/sign-in', '/dashboard/sign-out'];
const ROUTES = new Set([...PAGES, '/dashboard/events', '/dashboard/fleet.json', '/dashboard/app.js', '/dashboard/app.css', '/favicon.ico']);

/** What the dashboard reads the fleet from and checks the token against. */
export interface DashboardOptions {
  control: AdminControl;
  /** The rollout the deployer announced (POST /admin/rollout), or null. Default: none. */
  rollout?: () => RolloutAnnouncement | null;
  /** sha256 of the admin token (the same digest the bearer check compares against). */
  tokenDigest: Buffer;
  /** True when the request carries the right admin bearer token (scripts may read fleet.json too). */
  bearerOk: (req: http.IncomingMessage) => boolean;
  logger: Logger;
  /** Session lifetime, ms. Default DEFAULT_SESSION_TTL_MS. */
  sessionTtlMs?: number;
  /** The app's version path (app contract). Default `/version`. */
  versionPath?: string;
  /** The listener serves HTTPS: cookies get `Secure` and the page's origin is `https://<Host>`. */
  tls?: boolean;
}

/** The dashboard of one admin listener. */
export interface Dashboard {
  /** True when `path` (no query) is one of the dashboard's routes: the admin server hands it to `plugin`. */
  handles(path: string): boolean;
  /**
   * Fastify plugin with every dashboard route, its cookie and form-body parsing, a 405 for a wrong
   * method on a dashboard path and a 500 (logged) for an internal error. Register it on a Fastify
   * instance that gets only the paths `handles` accepts (every other path would answer 405).
   */
  plugin: (app: FastifyInstance) => Promise<void>;
  /** End every event stream and stop sampling (the admin server is closing). */
  close(): void;
}

const PAGE_HEADERS: http.OutgoingHttpHeaders = {
  'content-security-policy': "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Not `no-referrer`: with it, browsers send `Origin: null` on form POSTs and the origin check fails.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

function send(reply: FastifyReply, status: number, contentType: string, body: string, extra: http.OutgoingHttpHeaders = {}): FastifyReply {
  return reply.code(status).headers({ ...PAGE_HEADERS, ...extra }).type(contentType).send(body);
}

function sendJson(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return send(reply, status, 'application/json', JSON.stringify(body));
}

function methodNotAllowed(reply: FastifyReply): FastifyReply {
  return send(reply, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET' });
}

/** One field of a parsed form: a string, or undefined when absent or repeated. */
function field(form: unknown, name: string): string | undefined {
  const v = form !== null && typeof form === 'object' ? (form as Record<string, unknown>)[name] : undefined;
  return typeof v === 'string' ? v : undefined;
}

/** Create the dashboard for one admin listener. */
export function createDashboard(options: DashboardOptions): Dashboard {
  const { control, logger, tokenDigest } = options;
  const tls = options.tls === true;
  const cookieOptions = { path: '/', httpOnly: true, sameSite: 'strict', secure: tls } as const;
  const scheme = tls ? 'https' : 'http';
  const sessions = new SessionStore(options.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS);
  const csrf = new CsrfTokens();
  const sampler = new FleetSampler({ control, versionPath: options.versionPath, rollout: options.rollout });
  const events = new FleetEvents({ sampler, logger, sessionValid: (key) => sessions.valid(key) });

  const from = (req: FastifyRequest): string | undefined => req.raw.socket.remoteAddress;
  const sessionOf = (req: FastifyRequest): string | null => sessions.find(req.cookies[SESSION_COOKIE]);

  function showSignIn(req: FastifyRequest, reply: FastifyReply, status: number, error: string | null): FastifyReply {
    const value = csrf.issue(req.cookies[CSRF_COOKIE]);
    reply.setCookie(CSRF_COOKIE, value, cookieOptions);
    return send(reply, status, 'text/html; charset=utf-8', signInPage(value, error));
  }

  /** The sign-in decision; `form` is null when the body could not be read as a small form. */
  function signIn(req: FastifyRequest, reply: FastifyReply, form: unknown): FastifyReply {
    if (!sameOrigin(req.headers, scheme)) {
      // Only origins: a Referer's query string could hold a token someone pasted into a URL.
      logger.warn({ from: from(req), origin: req.headers.origin, referer: originOf(req.headers.referer) }, 'dashboard sign-in refused: not from the dashboard page');
      return showSignIn(req, reply, 403, 'Sign in from this page (the request did not come from it).');
    }
    if (form === null || !csrf.matches(req.cookies[CSRF_COOKIE], field(form, 'csrf'))) {
      logger.warn({ from: from(req) }, 'dashboard sign-in refused: missing or stale form token');
      return showSignIn(req, reply, 403, 'The form expired; sign in again.');
    }
    if (!tokenMatches(tokenDigest, field(form, 'token') ?? '')) {
      logger.warn({ from: from(req) }, 'dashboard sign-in refused: wrong token');
      return showSignIn(req, reply, 401, 'Wrong token.');
    }
    const id = sessions.start();
    logger.info({ from: from(req), sessions: sessions.size }, 'dashboard sign-in');
    reply.setCookie(SESSION_COOKIE, id, { ...cookieOptions, maxAge: Math.floor(sessions.ttlMs / 1000) });
    return reply.code(303).headers(PAGE_HEADERS).header('location', '/dashboard').send();
  }

  function signOut(req: FastifyRequest, reply: FastifyReply): FastifyReply {
    if (!sameOrigin(req.headers, scheme)) return send(reply, 403, 'text/plain; charset=utf-8', 'sign out from the dashboard page\n');
    const key = sessionOf(req);
    if (key !== null) {
      sessions.end(key);
      events.endSession(key);
      logger.info({ from: from(req) }, 'dashboard sign-out');
    }
    reply.setCookie(SESSION_COOKIE, '', { ...cookieOptions, maxAge: 0 });
    return reply.code(303).headers(PAGE_HEADERS).header('location', '/dashboard').send();
  }

  /** The session key, `null` for a bearer-token client, or undefined (answered 401) for neither. */
  function dataAccess(req: FastifyRequest, reply: FastifyReply): string | null | undefined {
    const session = sessionOf(req);
    if (session !== null || options.bearerOk(req.raw)) return session;
    // proxy_started_at lets an open page tell "the proxy restarted" (sessions live in memory) from an expired session.
    sendJson(reply, 401, { error: 'unauthorized', message: 'sign in at /dashboard, or send Authorization: Bearer <admin token>', proxy_started_at: sampler.startedAt });
    return undefined;
  }

  async function plugin(app: FastifyInstance): Promise<void> {
    await app.register(cookie);
    // Only the sign-in route is limited (its route config below); nothing else counts.
    await app.register(rateLimit, { global: false });
    // The sign-in form is the only body read here: no JSON or other parser.
    app.removeAllContentTypeParsers();
    await app.register(formbody, { bodyLimit: MAX_FORM_BYTES });

    app.setNotFoundHandler((_req, reply) => methodNotAllowed(reply));
    app.setErrorHandler((err: FastifyError, req, reply) => {
      // A body that is too large or of another type: the sign-in decides as for no form; sign-out
      // never needed one.
      if (err.statusCode === 429) {
        logger.warn({ from: from(req) }, 'dashboard sign-in refused: too many attempts');
        return sendJson(reply, 429, { error: 'too_many_attempts', message: `at most ${SIGN_IN_ATTEMPTS_PER_MINUTE} sign-in attempts a minute from one address; wait and retry` });
      }
      const clientError = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500;
      const path = req.url.split('?')[0];
      if (clientError && req.method === 'POST' && path === '/dashboard/sign-in') return signIn(req, reply, null);
      if (clientError && req.method === 'POST' && path === '/dashboard/sign-out') return signOut(req, reply);
      if (clientError) return send(reply, err.statusCode!, 'text/plain; charset=utf-8', 'bad request\n');
      logger.error({ err }, 'admin request failed');
      return sendJson(reply, 500, { error: 'internal', message: 'admin request failed; see the proxy log' });
    });

    // Browsers ask for it on every page; without this they would log the admin API's 401.
    app.get('/favicon.ico', (_req, reply) => reply.code(204).header('cache-control', 'max-age=86400').send());
    app.get('/dashboard/app.js', (_req, reply) => send(reply, 200, 'text/javascript; charset=utf-8', DASHBOARD_JS, { 'cache-control': 'no-cache' }));
    app.get('/dashboard/app.css', (_req, reply) => send(reply, 200, 'text/css; charset=utf-8', DASHBOARD_CSS, { 'cache-control': 'no-cache' }));
    // A token in the query string is ignored on purpose (it would end up in history and logs);
    // only the form body is read.
    for (const url of PAGES) {
      app.get(url, (req, reply) => (sessionOf(req) === null ? showSignIn(req, reply, 200, null) : send(reply, 200, 'text/html; charset=utf-8', fleetPage())));
    }
    app.post(
      '/dashboard/sign-in',
      { bodyLimit: MAX_FORM_BYTES, config: { rateLimit: { max: SIGN_IN_ATTEMPTS_PER_MINUTE, timeWindow: 60_000 } } },
      (req, reply) => signIn(req, reply, req.body ?? null),
    );
    app.post('/dashboard/sign-out', { bodyLimit: MAX_FORM_BYTES }, (req, reply) => signOut(req, reply));
    app.get('/dashboard/fleet.json', async (req, reply) => {
      if (dataAccess(req, reply) === undefined) return reply;
      return sendJson(reply, 200, await sampler.snapshot());
    });
    app.get('/dashboard/events', { exposeHeadRoute: false }, (req, reply) => {
      const session = dataAccess(req, reply);
      if (session === undefined) return reply;
      if (events.full()) return sendJson(reply, 503, { error: 'too_many_streams', message: `at most ${MAX_STREAMS} dashboards at once` });
      reply.hijack();
      events.open(req.raw, reply.raw, PAGE_HEADERS, session);
      return reply;
    });
  }

  return {
    handles: (path) => ROUTES.has(path),
    plugin,
    close: () => events.close(),
  };
}
