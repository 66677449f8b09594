/**
 * A bounded load of real users through the proxy: each client uploads a CSV with its own marker
 * (creating a server-made session on some instance), then loops reading its session and
 * /version, uploading again now and then. Every request's outcome is recorded.
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
}

export interface LoadHandle {
  /** Ask the clients to stop once `minRequests` were sent (or maxMs passed); resolves with the result. */
  stop(): Promise<LoadResult>;
}

/** Start `clients` concurrent users against `proxyUrl`. */
export function startLoad(proxyUrl: string, options: { clients?: number; minRequests?: number; maxRequests?: number; maxMs?: number } = {}): LoadHandle {
  const clients = options.clients ?? 16;
  const minRequests = options.minRequests ?? 2000;
  const maxRequests = options.maxRequests ?? 50_000;
  const deadline = Date.now() + (options.maxMs ?? 180_000);
  const agent = new Agent({ connections: clients * 2, keepAliveTimeout: 4000 });
  const result: LoadResult = { requests: 0, failures: [], releases: new Map(), lostSessions: 0 };
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

  const running = Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
  return {
    async stop() {
      stopping = true;
      await running;
      await agent.close();
      return result;
    },
  };
}
