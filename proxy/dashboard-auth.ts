/**
 * Who may look at the fleet dashboard: the admin-token check of the sign-in form, the server-side
 * sessions it opens, the sign-in form's CSRF token, and the same-origin check of the sign-in and
 * sign-out POSTs. No HTTP here: dashboard.ts wires these into its Fastify routes.
 *
 * CSRF token: made and checked by @fastify/csrf (HMAC-SHA256 with a key and secret random per
 * listener, carrying its issue time). The page gets the same value twice, in an HttpOnly,
 * SameSite=Strict cookie and in a hidden form field; a sign-in must send both, equal, and the
 * value must be one this listener issued within CSRF_VALIDITY_MS (a signed double-submit cookie:
 * a cookie planted from elsewhere is not a valid token).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Tokens } from '@fastify/csrf';

/** Default session lifetime, ms (12 h, absolute: a session is not extended by use). */
export const DEFAULT_SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** How long a sign-in form's CSRF token is accepted after it was issued, ms (12 h). */
export const CSRF_VALIDITY_MS = 12 * 60 * 60 * 1000;
/** Sessions kept at most; signing in beyond this ends the oldest. */
const MAX_SESSIONS = 1000;

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * True when `candidate` is the admin token whose sha256 is `tokenDigest`. Compared in constant time
 * on the digests, so neither the token's length nor its prefix leaks.
 */
export function tokenMatches(tokenDigest: Buffer, candidate: string): boolean {
  return timingSafeEqual(tokenDigest, sha256(candidate));
}

/**
 * Server-side dashboard sessions: a random id in the browser's cookie, only its sha256 kept here
 * (a lookup reveals nothing about stored ids), each with an absolute expiry.
 */
export class SessionStore {
  /** sha256(session id), hex -> expiry (ms since epoch). */
  private readonly sessions = new Map<string, number>();

  /** @param ttlMs lifetime of every session, ms. */
  constructor(readonly ttlMs: number) {}

  /** Number of sessions held (expired ones included until the next sign-in sweeps them). */
  get size(): number {
    return this.sessions.size;
  }

  /**
   * Open a session. Forgets expired sessions first and, when MAX_SESSIONS are open, the oldest.
   * @returns the session id for the cookie: 32 random bytes, base64url (43 characters).
   */
  start(): string {
    const now = Date.now();
    for (const [k, exp] of this.sessions) if (exp <= now) this.sessions.delete(k);
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(this.keyOf(id), now + this.ttlMs);
    return id;
  }

  /**
   * Find the live session for a cookie value.
   * @param id the session cookie's value, or undefined without one.
   * @returns the session's key (for `valid` and `end`), or null when unknown or expired (an
   *   expired one is forgotten).
   */
  find(id: string | undefined): string | null {
    if (id === undefined || id === '') return null;
    const key = this.keyOf(id);
    const expires = this.sessions.get(key);
    if (expires === undefined) return null;
    if (expires <= Date.now()) {
      this.sessions.delete(key);
      return null;
    }
    return key;
  }

  /** True while the session with this key (from `find`) is open and not expired. */
  valid(key: string): boolean {
    return (this.sessions.get(key) ?? 0) > Date.now();
  }

  /** End the session with this key (from `find`); unknown keys are ignored. */
  end(key: string): void {
    this.sessions.delete(key);
  }

  private keyOf(id: string): string {
    return createHash('sha256').update(id).digest('hex');
  }
}

/** The sign-in form's CSRF tokens (see the file comment). One instance per listener. */
export class CsrfTokens {
  private readonly tokens = new Tokens({ validity: CSRF_VALIDITY_MS, secretLength: 32, hmacKey: randomBytes(32) });
  private readonly secret = this.tokens.secretSync();

  /**
   * The token for a new sign-in form: `existing` (the browser's CSRF cookie) when it is still a
   * valid token, so two open tabs do not invalidate each other, else a fresh one.
   * @returns a token of `[A-Za-z0-9_-]` characters, safe in a cookie and an HTML attribute.
   */
  issue(existing: string | undefined): string {
    if (existing !== undefined && this.tokens.verify(this.secret, existing)) return existing;
    return this.tokens.create(this.secret);
  }

  /**
   * True when the CSRF cookie and the form field carry the same value and it is a token this
   * listener issued less than CSRF_VALIDITY_MS ago. Missing values are false.
   */
  matches(cookie: string | undefined, field: string | undefined): boolean {
    if (cookie === undefined || field === undefined) return false;
    return timingSafeEqual(sha256(cookie), sha256(field)) && this.tokens.verify(this.secret, cookie);
  }
}

/**
 * True when a state-changing request comes from a page of this listener: its Origin (or, without
 * one, its Referer's origin) must be `<scheme>://<Host>`. Without either it is false.
 * @param scheme `https` when the listener serves TLS. Default `http`.
 */
export function sameOrigin(headers: IncomingHttpHeaders, scheme: 'http' | 'https' = 'http'): boolean {
  const host = headers.host;
  if (host === undefined) return false;
  const expected = `${scheme}://${host}`;
  if (headers.origin !== undefined) return headers.origin === expected;
  return headers.referer !== undefined && originOf(headers.referer) === expected;
}

/**
 * The origin of a Referer, for logs and the origin check: never its path or query, which could hold
 * a token someone pasted into a URL. @returns undefined without a Referer, `(unparsable)` for junk.
 */
export function originOf(referer: string | undefined): string | undefined {
  if (referer === undefined) return undefined;
  try {
    return new URL(referer).origin;
  } catch {
    return '(unparsable)';
  }
}
