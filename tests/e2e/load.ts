/**
 * A bounded load of real users through the proxy: each client uploads a CSV with its own marker
 * (creating a server-made session on some instance), then loops reading its session and
 * /version, uploading again now and then; beside them, cookie-less page loads (a CDN, a health
 * probe, a user with cookies blocked) GET `/` and then every asset the page names, as a browser
 * would. Every request's outcome is recorded; an asset the page names that answers 404 is also
 * counted as an asset 404.
 * Bounded: it stops at `maxRequests` or `maxMs`, whichever comes first, and never before
 * `minRequests` unless `maxMs` passed.
 */
import { randomUUID } from 'node:crypto';
import { Agent, FormData, request } from 'undici';
import { CookieJar } from '../../deployer/checks/cookie-jar.ts';

export interface LoadResult {
  requests: number;
  failures: { what: string; status: number | null; error?: string }[];
  /** Release ids seen in /version answers, with counts. */
  releases: Map<string, number>;
  /** Session reads that did not show the client's own marker. */
  lostSessions: number;
  /** Cookie-less page loads, asset requests they made, and those answered 404. */
  pageLoads: number;
  assetRequests: number;
  asset404s: number;
}

/** Same-origin script and stylesheet paths a page names (`src=` and `href=` starting with `/`). */
export function pageAssets(html: string): string[] {
  const out = new Set<string>();
  for (const m of html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)="(\/[^"/][^"]*)"/g)) out.add(m[1]!);
  return [...out];
}

export interface LoadHandle {
  /** Ask the clients to stop once `minRequests` were sent (or maxMs passed); resolves with the result. */
  stop(): Promise<LoadResult>;
}

/** Start `clients` concurrent users against `proxyUrl`. */
export function startLoad(
  proxyUrl: string,
  options: { clients?: number; pageClients?: number; minRequests?: number; maxRequests?: number; maxMs?: number } = {},
): LoadHandle {
  const clients = options.clients ?? 16;
  const pageClients = options.pageClients ?? 4;
  const minRequests = options.minRequests ?? 2000;
  const maxRequests = options.maxRequests ?? 50_000;
  const deadline = Date.now() + (options.maxMs ?? 180_000);
  const agent = new Agent({ connections: (clients + pageClients) * 2, keepAliveTimeout: 4000 });
  const result: LoadResult = { requests: 0, failures: [], releases: new Map(), lostSessions: 0, pageLoads: 0, assetRequests: 0, asset404s: 0 };
  let stopping = false;
  const done = () => Date.now() > deadline || result.requests >= maxRequests || (stopping && result.requests >= minRequests);

  async function call(jar: CookieJar, method: 'GET' | 'POST', path: string, body?: FormData): Promise<{ status: number; text: string } | null> {
    result.requests++;
    try {
      const res = await request(`${proxyUrl}${path}`, {
        method,
        body,
        dispatcher: agent,
        headers: jar.header() ? { cookie: jar.header()! } : {},
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      jar.store(res.headers['set-cookie']);
      const text = await res.body.text();
      if (res.statusCode >= 400) result.failures.push({ what: `${method} ${path}`, status: res.statusCode, error: text.slice(0, 200) });
      return { status: res.statusCode, text };
    } catch (e) {
      result.failures.push({ what: `${method} ${path}`, status: null, error: (e as Error).message });
      return null;
    }
  }

  async function upload(jar: CookieJar, marker: string): Promise<boolean> {
    const form = new FormData();
    form.append('file', new Blob([`WardName,population,tpr\n${marker}-a,100,0.2\n${marker}-b,200,0.3\n`]), 'wards.csv');
    const r = await call(jar, 'POST', '/api/upload', form);
    return r?.status === 200;
  }

  async function client(n: number): Promise<void> {
    const jar = new CookieJar();
    let marker = `load-${n}-${randomUUID()}`;
    let hasSession = await upload(jar, marker);
    for (let i = 0; !done(); i++) {
      const v = await call(jar, 'GET', '/version');
      if (v?.status === 200) {
        const release = (JSON.parse(v.text) as { release: string }).release;
        result.releases.set(release, (result.releases.get(release) ?? 0) + 1);
      }
      if (hasSession) {
        const s = await call(jar, 'GET', '/api/session');
        if (s?.status === 200 && !s.text.includes(marker)) result.lostSessions++;
      }
      if (i % 10 === 9) {
        marker = `load-${n}-${randomUUID()}`;
        hasSession = await upload(jar, marker);
      }
    }
  }

  /** A cookie-less browser: the page, then every asset it names. */
  async function pageClient(): Promise<void> {
    const none = new CookieJar();
    while (!done()) {
      const page = await call(none, 'GET', '/');
      if (page?.status !== 200) continue;
      result.pageLoads++;
      for (const asset of pageAssets(page.text)) {
        result.assetRequests++;
        const a = await call(none, 'GET', asset);
        if (a?.status === 404) result.asset404s++;
      }
    }
  }

  const running = Promise.all([...Array.from({ length: clients }, (_, n) => client(n)), ...Array.from({ length: pageClients }, () => pageClient())]);
  return {
    async stop() {
      stopping = true;
      await running;
      await agent.close();
      return result;
    },
  };
}
