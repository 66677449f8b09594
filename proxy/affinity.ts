/**
 * The signed affinity cookie that pins a client to the instance holding its session data.
 *
 * Value: `<instance name>.<base64url HMAC-SHA256(secret, "lockstep-affinity:" + name)>`.
 * The signature depends only on the instance name, so each instance's cookie is computed once and a
 * request costs one cookie-header scan and one constant-time compare, no HMAC. What the signature
 * buys: a client cannot name an instance it was never assigned (or an arbitrary one); a forged or
 * stale cookie is ignored and the client is balanced normally. It is not an authentication token:
 * the app's own session cookie protects the session's data.
 *
 * Exactly what it guarantees, and what not: it is NOT bound to a client. Anyone holding a copy
 * (copied from a browser, or from a shared cache) reaches the same instance with it; that gives
 * nothing a client could not get by retrying until balancing sends it there, no access to another
 * client's session (the app checks its own session cookie on every instance), and no way to reach
 * a draining, disabled or unhealthy instance (the proxy re-pins those). It only concentrates load
 * if many clients replay one value, which weighted balancing of unpinned requests then evens out.
 * The proxy never adds it to a response shared caches may keep (`Cache-Control: public` or
 * `s-maxage`), so a CDN does not hand one pin to every client.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The cookie value that pins to `name`, and its signature bytes. */
export function signAffinity(secret: string, name: string): { value: string; signature: Buffer } {
  const signature = createHmac('sha256', secret).update(`lockstep-affinity:${name}`).digest();
  return { value: `${name}.${signature.toString('base64url')}`, signature };
}

/**
 * The `Set-Cookie` header value that pins a client to `name`: HttpOnly (scripts cannot read it),
 * SameSite=Lax, Path=/, a browser-session cookie (no Max-Age).
 */
export function affinitySetCookie(cookieName: string, secret: string, name: string): string {
  return `${cookieName}=${signAffinity(secret, name).value}; Path=/; HttpOnly; SameSite=Lax`;
}

/**
 * Find the affinity cookie in a `Cookie` request header.
 * @param cookieHeader the raw header (may hold many cookies), or undefined.
 * @param prefix `<cookie name>=`.
 * @returns the raw cookie value, or undefined when absent.
 */
export function findAffinityCookie(cookieHeader: string | undefined, prefix: string): string | undefined {
  if (cookieHeader === undefined) return undefined;
  let at = cookieHeader.indexOf(prefix);
  // The name must start the header or follow "; " (not be the tail of another cookie's name).
  while (at > 0) {
    const before = cookieHeader.charCodeAt(at - 1);
    if (before === 0x20 /* space */ || before === 0x3b /* ; */) break;
    at = cookieHeader.indexOf(prefix, at + 1);
  }
  if (at < 0) return undefined;
  const start = at + prefix.length;
  const end = cookieHeader.indexOf(';', start);
  return end < 0 ? cookieHeader.slice(start) : cookieHeader.slice(start, end);
}

/**
 * Split a cookie value into instance name and signature and check the signature.
 * @param value raw cookie value.
 * @param expectedSignature looks up the signature an instance's cookie must carry (undefined when
 *   the instance is unknown).
 * @returns the instance name when the signature is valid, else undefined.
 */
export function verifyAffinity(
  value: string,
  expectedSignature: (name: string) => Buffer | undefined,
): string | undefined {
  const dot = value.lastIndexOf('.');
  if (dot <= 0) return undefined;
  const name = value.slice(0, dot);
  const expected = expectedSignature(name);
  if (expected === undefined) return undefined;
  const given = Buffer.from(value.slice(dot + 1), 'base64url');
  if (given.length !== expected.length) return undefined;
  return timingSafeEqual(given, expected) ? name : undefined;
}
