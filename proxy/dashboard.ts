/**
 * The fleet dashboard on the admin listener. A browser cannot send the admin bearer header, so the
 * page trades the admin token (POSTed in a form body, never in the URL) for a session: a random id
 * kept server-side, sent back in an HttpOnly, SameSite=Strict cookie. That cookie opens only the
 * dashboard's own read-only routes; every other admin route still needs the bearer token.
 *
 *   GET  /  or  /dashboard          sign-in form, or the fleet view with a valid session
 *   POST /dashboard/sign-in         form body `token`, `csrf` -> 303 to /dashboard + session cookie; 401 page
 *   POST /dashboard/sign-out        ends the session
 *   GET  /dashboard/events          Server-Sent Events: a `fleet` event (FleetSnapshot JSON) every second
 *   GET  /dashboard/fleet.json      the current FleetSnapshot (session cookie or bearer token)
 *   GET  /dashboard/app.js | app.css, /favicon.ico (204)
 *
 * CSRF: the session cookie is SameSite=Strict; the sign-in and sign-out POSTs must carry an Origin
 * (or Referer) equal to the listener's own origin, and the sign-in form a double-submit token that
 * matches a SameSite=Strict cookie set with the form.
 */
import type http from 'node:http';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { AdminControl } from './control.ts';
import { FleetSampler, type FleetSnapshot } from './dashboard-fleet.ts';
import { DASHBOARD_CSS, DASHBOARD_JS, fleetPage, signInPage } from './dashboard-page.ts';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'lockstep_dashboard';
/** Name of the sign-in form's double-submit CSRF cookie. */
export const CSRF_COOKIE = 'lockstep_dashboard_csrf';
/** Default session lifetime, ms (12 h, absolute: a session is not extended by use). */
export const DEFAULT_SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** Sessions kept at most; signing in beyond this ends the oldest. */
const MAX_SESSIONS = 1000;
/** Open event streams at most; more are answered 503. */
const MAX_STREAMS = 32;
/** Upper bound of the sign-in form body, bytes. */
const MAX_FORM_BYTES = 4096;
/** Time between two `fleet` events, ms. */
const TICK_MS = 1000;

const ROUTES = new Set(['/', '/dashboard', '/dashboard/', '/dashboard/sign-in', '/dashboard/sign-out', '/dashboard/events', '/dashboard/fleet.json', '/dashboard/app.js', '/dashboard/app.css', '/favicon.ico']);

/** What the dashboard reads the fleet from and checks the token against. */
export interface DashboardOptions {
  control: AdminControl;
  /** sha256 of the admin token (the same digest the bearer check compares against). */
  tokenDigest: Buffer;
  /** True when the request carries the right admin bearer token (scripts may read fleet.json too). */
  bearerOk: (req: http.IncomingMessage) => boolean;
  logger: Logger;
  /** Default DEFAULT_SESSION_TTL_MS. */
  sessionTtlMs?: number;
  /** The app's version path (app contract). Default `/version`. */
  versionPath?: string;
}

/** The dashboard's routes, to be consulted by the admin server before its own. */
export interface Dashboard {
  /** True when `path` (no query) is one of the dashboard's routes. */
  handles(path: string): boolean;
  /**
   * Answer a request for one of the dashboard's routes (see `handles`). Reads the body itself, so the
   * caller must not consume it. Rejects only on an internal error (the caller answers 500).
   */
  serve(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void>;
  /** End every event stream and stop sampling (the admin server is closing). */
  close(): void;
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();
const sessionKey = (id: string): string => createHash('sha256').update(id).digest('hex');

const PAGE_HEADERS: http.OutgoingHttpHeaders = {
  'content-security-policy': "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Not `no-referrer`: with it, browsers send `Origin: null` on form POSTs and the origin check fails.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
};

function cookies(req: http.IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string, extra: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', JSON.stringify(body));
}

/** The form body, or null when it is too large or the client went away. */
function readForm(req: http.IncomingMessage): Promise<URLSearchParams | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_FORM_BYTES) chunks.push(c);
    });
    req.on('end', () => resolve(size > MAX_FORM_BYTES ? null : new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', () => resolve(null));
    req.on('close', () => resolve(null));
  });
}

/**
 * True when a state-changing request comes from a page of this listener: its Origin (or, without
 * one, its Referer's origin) must be `http://<Host>`.
 */
function sameOrigin(req: http.IncomingMessage): boolean {
  const host = req.headers.host;
  if (host === undefined) return false;
  const expected = `http://${host}`;
  const origin = req.headers.origin;
  if (origin !== undefined) return origin === expected;
  const referer = req.headers.referer;
  if (referer === undefined) return false;
  try {
    return new URL(referer).origin === expected;
  } catch {
    return false;
  }
}

function originOf(referer: string | undefined): string | undefined {
  if (referer === undefined) return undefined;
  try {
    return new URL(referer).origin;
  } catch {
    return '(unparsable)';
  }
}

function equalStrings(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

interface Stream {
  res: http.ServerResponse;
  /** Session key, or null when the stream was opened with the bearer token. */
  session: string | null;
}

/** Create the dashboard for one admin server. */
export function createDashboard(options: DashboardOptions): Dashboard {
  const { control, logger, tokenDigest } = options;
  const ttlMs = options.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS;
  const sampler = new FleetSampler({ control, versionPath: options.versionPath });
  /** sha256(session id) -> expiry (ms since epoch). Keyed by hash so a lookup reveals nothing about stored ids. */
  const sessions = new Map<string, number>();
  const streams = new Set<Stream>();
  let ticker: NodeJS.Timeout | null = null;
  let ticking = false;

  const sessionOf = (req: http.IncomingMessage): string | null => {
    const id = cookies(req).get(SESSION_COOKIE);
    if (id === undefined || id === '') return null;
    const key = sessionKey(id);
    const expires = sessions.get(key);
    if (expires === undefined) return null;
    if (expires <= Date.now()) {
      sessions.delete(key);
      return null;
    }
    return key;
  };
  const sessionValid = (key: string): boolean => (sessions.get(key) ?? 0) > Date.now();

  const from = (req: http.IncomingMessage): string | undefined => req.socket.remoteAddress;

  function startSession(): { id: string; cookie: string } {
    const now = Date.now();
    for (const [k, exp] of sessions) if (exp <= now) sessions.delete(k);
    while (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    sessions.set(sessionKey(id), now + ttlMs);
    const cookie = `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(ttlMs / 1000)}`;
    return { id, cookie };
  }

  function showSignIn(req: http.IncomingMessage, res: http.ServerResponse, status: number, error: string | null): void {
    // Reuse the browser's CSRF value when it has one, so two open tabs do not invalidate each other.
    const existing = cookies(req).get(CSRF_COOKIE);
    const csrf = existing !== undefined && /^[A-Za-z0-9_-]{32,64}$/.test(existing) ? existing : randomBytes(24).toString('base64url');
    send(res, status, 'text/html; charset=utf-8', signInPage(csrf, error), {
      'set-cookie': `${CSRF_COOKIE}=${csrf}; Path=/; HttpOnly; SameSite=Strict`,
    });
  }

  async function signIn(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const form = await readForm(req);
    if (!sameOrigin(req)) {
      // Only origins: a Referer's query string could hold a token someone pasted into a URL.
      logger.warn({ from: from(req), origin: req.headers.origin, referer: originOf(req.headers.referer) }, 'dashboard sign-in refused: not from the dashboard page');
      return showSignIn(req, res, 403, 'Sign in from this page (the request did not come from it).');
    }
    const csrfCookie = cookies(req).get(CSRF_COOKIE);
    const csrfField = form?.get('csrf');
    if (form === null || csrfCookie === undefined || csrfField == null || !equalStrings(csrfCookie, csrfField)) {
      logger.warn({ from: from(req) }, 'dashboard sign-in refused: missing or stale form token');
      return showSignIn(req, res, 403, 'The form expired; sign in again.');
    }
    const token = form.get('token') ?? '';
    if (!timingSafeEqual(tokenDigest, sha256(token))) {
      logger.warn({ from: from(req) }, 'dashboard sign-in refused: wrong token');
      return showSignIn(req, res, 401, 'Wrong token.');
    }
    const { cookie } = startSession();
    logger.info({ from: from(req), sessions: sessions.size }, 'dashboard sign-in');
    res.writeHead(303, { ...PAGE_HEADERS, location: '/dashboard', 'set-cookie': cookie, 'content-length': 0 });
    res.end();
  }

  function signOut(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume();
    if (!sameOrigin(req)) return send(res, 403, 'text/plain; charset=utf-8', 'sign out from the dashboard page\n');
    const key = sessionOf(req);
    if (key !== null) {
      sessions.delete(key);
      for (const s of streams) if (s.session === key) s.res.end();
      logger.info({ from: from(req) }, 'dashboard sign-out');
    }
    res.writeHead(303, {
      ...PAGE_HEADERS,
      location: '/dashboard',
      'set-cookie': `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`,
      'content-length': 0,
    });
    res.end();
  }

  async function tick(): Promise<void> {
    if (ticking || streams.size === 0) return;
    ticking = true;
    try {
      let snap: FleetSnapshot;
      try {
        snap = await sampler.snapshot();
      } catch (err) {
        logger.error({ err }, 'dashboard could not read the fleet');
        return;
      }
      const frame = `event: fleet\ndata: ${JSON.stringify(snap)}\n\n`;
      for (const s of streams) {
        if (s.session !== null && !sessionValid(s.session)) s.res.end();
        else s.res.write(frame);
      }
    } finally {
      ticking = false;
    }
  }

  function openStream(req: http.IncomingMessage, res: http.ServerResponse, session: string | null): void {
    if (streams.size >= MAX_STREAMS) return sendJson(res, 503, { error: 'too_many_streams', message: `at most ${MAX_STREAMS} dashboards at once` });
    res.writeHead(200, {
      ...PAGE_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    req.socket.setNoDelay(true);
    res.write('retry: 2000\n\n');
    const stream: Stream = { res, session };
    streams.add(stream);
    res.on('close', () => {
      streams.delete(stream);
      if (streams.size === 0 && ticker !== null) {
        clearInterval(ticker);
        ticker = null;
      }
    });
    if (ticker === null) {
      ticker = setInterval(() => void tick(), TICK_MS);
      ticker.unref();
    }
    // The first picture at once, not a second later.
    void tick();
  }

  return {
    handles: (path) => ROUTES.has(path),

    async serve(req, res, url) {
      const path = url.pathname;
      const method = req.method ?? 'GET';
      if (method === 'POST' && path === '/dashboard/sign-in') return signIn(req, res);
      if (method === 'POST' && path === '/dashboard/sign-out') return signOut(req, res);
      req.resume();
      if (method !== 'GET' && method !== 'HEAD') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET' });
      // Browsers ask for it on every page; without this they would log the admin API's 401.
      if (path === '/favicon.ico') {
        res.writeHead(204, { 'cache-control': 'max-age=86400' });
        return void res.end();
      }
      if (path === '/dashboard/app.js') return send(res, 200, 'text/javascript; charset=utf-8', DASHBOARD_JS, { 'cache-control': 'no-cache' });
      if (path === '/dashboard/app.css') return send(res, 200, 'text/css; charset=utf-8', DASHBOARD_CSS, { 'cache-control': 'no-cache' });
      const session = sessionOf(req);
      if (path === '/dashboard/events' || path === '/dashboard/fleet.json') {
        const bearer = session === null && options.bearerOk(req);
        if (session === null && !bearer) {
          return sendJson(res, 401, { error: 'unauthorized', message: 'sign in at /dashboard, or send Authorization: Bearer <admin token>' });
        }
        if (path === '/dashboard/events') {
          if (method !== 'GET') return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET' });
          return openStream(req, res, session);
        }
        return sendJson(res, 200, await sampler.snapshot());
      }
      // `/`, `/dashboard`: a token in the query string is ignored on purpose (it would end up in
      // history and logs); only the form body is read.
      if (session === null) return showSignIn(req, res, 200, null);
      return send(res, 200, 'text/html; charset=utf-8', fleetPage());
    },

    close() {
      if (ticker !== null) clearInterval(ticker);
      ticker = null;
      for (const s of streams) s.res.end();
      streams.clear();
    },
  };
}
