/**
 * The session cookie: the only way a client names its session. HttpOnly so page scripts never
 * see the id, SameSite=Lax against cross-site use, Secure when the request reached the proxy
 * over HTTPS (the proxy says so in X-Forwarded-Proto).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { SessionStore } from './sessions.ts';
import { AppError } from './errors.ts';

/** Name of the session cookie. */
export const SESSION_COOKIE = 'analysis_session';

function cameOverHttps(request: FastifyRequest): boolean {
  const forwarded = request.headers['x-forwarded-proto'];
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
  return first === 'https' || request.protocol === 'https';
}

/** Set the session cookie for `sessionId` on the reply. */
export function setSessionCookie(request: FastifyRequest, reply: FastifyReply, sessionId: string): void {
  reply.setCookie(SESSION_COOKIE, sessionId, {
    httpOnly: true,
    sameSite: 'lax',
    path: '/',
    secure: cameOverHttps(request),
  });
}

/** Tell the browser to forget the session cookie (same name, path and flags, expired). */
export function clearSessionCookie(request: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'lax', path: '/', secure: cameOverHttps(request) });
}

/**
 * The caller's session, from the cookie only.
 * @returns the session id, or null without a cookie or when it names no live session.
 */
export async function sessionOf(request: FastifyRequest, store: SessionStore): Promise<string | null> {
  return store.resolve(request.cookies[SESSION_COOKIE]);
}

/**
 * Like sessionOf, but a missing session is an error.
 * @throws AppError 401 NO_SESSION.
 */
export async function requireSession(request: FastifyRequest, store: SessionStore): Promise<string> {
  const id = await sessionOf(request, store);
  if (!id) throw new AppError(401, 'NO_SESSION', 'no session: upload a CSV first (sessions are identified by cookie only)');
  return id;
}
