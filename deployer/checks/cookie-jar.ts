/**
 * A per-client cookie jar, just enough for the session checks: every simulated client talks to
 * one origin (the proxy), so domain and path scoping do not change which cookies are sent.
 * It keeps the proxy's affinity cookie and the app's session cookie like a browser would.
 */

/** One cookie as set by a Set-Cookie header. */
export interface StoredCookie {
  name: string;
  value: string;
  httpOnly: boolean;
}

/**
 * Parse one Set-Cookie header value (RFC 6265 section 5.2, simplified: attributes other than
 * HttpOnly, Max-Age and Expires are ignored).
 * @returns the cookie and whether it deletes itself, or undefined for a line with no `name=`.
 */
export function parseSetCookie(line: string): { cookie: StoredCookie; expired: boolean } | undefined {
  const [pair, ...attrs] = line.split(';');
  const eq = pair?.indexOf('=') ?? -1;
  if (pair === undefined || eq <= 0) return undefined;
  const name = pair.slice(0, eq).trim();
  let value = pair.slice(eq + 1).trim();
  if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
  let httpOnly = false;
  let expired = false;
  for (const attr of attrs) {
    const i = attr.indexOf('=');
    const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
    const val = i < 0 ? '' : attr.slice(i + 1).trim();
    if (key === 'httponly') httpOnly = true;
    else if (key === 'max-age' && /^-?\d+$/.test(val)) expired = Number(val) <= 0;
    else if (key === 'expires') {
      const t = Date.parse(val);
      if (!Number.isNaN(t) && t <= Date.now()) expired = true;
    }
  }
  return name ? { cookie: { name, value, httpOnly }, expired } : undefined;
}

/** The cookies of one simulated client. Not shared between clients, by design. */
export class CookieJar {
  private readonly cookies = new Map<string, StoredCookie>();

  /**
   * Apply the Set-Cookie header(s) of a response.
   * @returns the names set (not deleted) by this response.
   */
  store(setCookie: string | string[] | undefined): string[] {
    const lines = setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie];
    const set: string[] = [];
    for (const line of lines) {
      const parsed = parseSetCookie(line);
      if (!parsed) continue;
      if (parsed.expired) this.cookies.delete(parsed.cookie.name);
      else {
        this.cookies.set(parsed.cookie.name, parsed.cookie);
        set.push(parsed.cookie.name);
      }
    }
    return set;
  }

  /** Set a cookie the way a client could forge it. */
  set(name: string, value: string): void {
    this.cookies.set(name, { name, value, httpOnly: false });
  }

  /** The cookie called `name`, or undefined. */
  get(name: string): StoredCookie | undefined {
    return this.cookies.get(name);
  }

  /** Every cookie held, in the order first set. */
  list(): StoredCookie[] {
    return [...this.cookies.values()];
  }

  /** A new jar with only the cookies `keep` accepts. */
  filter(keep: (c: StoredCookie) => boolean): CookieJar {
    const jar = new CookieJar();
    for (const c of this.cookies.values()) if (keep(c)) jar.cookies.set(c.name, { ...c });
    return jar;
  }

  /** The Cookie request header, or undefined when the jar is empty. */
  header(): string | undefined {
    if (this.cookies.size === 0) return undefined;
    return [...this.cookies.values()].map((c) => `${c.name}=${c.value}`).join('; ');
  }
}
