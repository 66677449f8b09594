/**
 * The rollout probe (issue 12, item 10): while a deploy, rollback or repair runs, a small bounded
 * load goes through the proxy the way users would, and at the end the figures say what users saw.
 * Two clients run side by side:
 * - cookie-less page loads (a CDN, a health probe, a user with cookies blocked): GET `/`, then GET
 *   every same-origin `<script src>` and `<link href>` the HTML names, like a browser would;
 * - one cookie-holding session (the app's session contract, inventory `app.checks`): one upload,
 *   then repeated reads of its own data, which must keep containing its marker.
 * Bounds: a fixed request rate (`rate_per_s`, shared by both clients), a maximum request count
 * (`max_requests`), a per-request timeout, and it stops when the operation ends (`stop()`).
 * Loopback or the operator's own proxy only: it only ever talks to `proxyUrl`.
 */
import { request, Agent } from 'undici';
import { PROBE_SECTION_DEFAULTS, type Inventory } from '../../config/inventory.ts';
import { CookieJar } from './cookie-jar.ts';
import { describeNetworkError } from './http.ts';
import { newMarker } from './isolation-probes.ts';
import { uploadCsv } from './session-client.ts';

/** The probe's settings: inventory `deploy.probe` (rate per second, request cap, per-request timeout in ms). */
export type ProbeSettings = Inventory['deploy']['probe'];

/** One failed request, for the summary (the first few are kept). */
export interface ProbeFailure {
  /** `page`, `asset`, `upload` or `session`. */
  kind: 'page' | 'asset' | 'upload' | 'session';
  path: string;
  /** `HTTP 404`, a network error, or what was wrong with the answer. */
  error: string;
}

/** What users saw during the operation. Times in ms. */
export interface ProbeFigures {
  requests: number;
  /** Requests that failed: network error or timeout, an unexpected status, or a session read without its own data. */
  failed: number;
  pageLoads: number;
  assetRequests: number;
  /** Asset requests answered 404 (a page naming an asset the instance that answered does not have). Counted in `failed` too. */
  asset404s: number;
  sessionReads: number;
  /** true: the session was created and every read returned its own data; false: some read did not; null: no session was created. */
  sessionsIntact: boolean | null;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  durationMs: number;
  /** True when `max_requests` was reached before the operation ended (the rest was not probed). */
  capped: boolean;
  /** The first failures (at most 10), to say what went wrong. */
  failures: ProbeFailure[];
}

/** A running probe. */
export interface ProbeHandle {
  /** Stop sending (requests in flight are abandoned, not counted) and return the figures. Idempotent. */
  stop(): Promise<ProbeFigures>;
}

const KEEP_FAILURES = 10;

/**
 * The asset URLs a page names: `src` of `<script>` and `href` of `<link>`, resolved against
 * `pageUrl`, same origin only (no `data:` or other hosts), without duplicates, in page order.
 * @param html the page's HTML. @param pageUrl absolute URL the page was fetched from.
 */
export function pageAssets(html: string, pageUrl: string): string[] {
  const base = new URL(pageUrl);
  const found: string[] = [];
  for (const m of html.matchAll(/<(script|link)\b[^>]*>/gi)) {
    const attr = m[1]!.toLowerCase() === 'script' ? 'src' : 'href';
    const v = new RegExp(`\\s${attr}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(m[0]);
    const raw = v ? (v[1] ?? v[2] ?? v[3] ?? '') : '';
    if (!raw) continue;
    let url: URL;
    try {
      url = new URL(raw.replace(/&amp;/g, '&'), base);
    } catch {
      continue;
    }
    if (url.origin !== base.origin) continue;
    url.hash = '';
    if (!found.includes(url.href)) found.push(url.href);
  }
  return found;
}

/** The p-th percentile (0..100, nearest rank) of `sorted` (ascending), or null when empty. */
export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** "1,204 requests, 0 failed, 0 asset 404s, p99 41 ms, sessions intact": one line of figures. */
export function renderProbeLine(f: ProbeFigures, what = 'rollout'): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const sessions = f.sessionsIntact === null ? 'no session could be created' : f.sessionsIntact ? 'sessions intact' : 'SESSIONS LOST';
  return (
    `during the ${what}: ${n(f.requests)} requests, ${n(f.failed)} failed, ${n(f.asset404s)} asset 404s, ` +
    `p99 ${f.p99Ms === null ? '-' : `${n(f.p99Ms)} ms`}, ${sessions}${f.capped ? ' (probe stopped at its max_requests)' : ''}`
  );
}

/** True when the figures show users a problem (exit code 1 for the operation). */
export function probeFailed(f: ProbeFigures): boolean {
  return f.failed > 0 || f.sessionsIntact === false;
}

type Outcome = { status: number; text: string; setCookie: string | string[] | undefined } | { error: string };

/**
 * Start the probe against `proxyUrl` (e.g. `http://127.0.0.1:8080`).
 * @param inventory for `app.checks` (upload path and field, session path).
 * @param settings overrides of the inventory's `deploy.probe` (rate, cap, timeout); `enabled` is the caller's to check.
 * @returns a handle whose `stop()` returns the figures. Never throws; request errors are figures.
 */
export function startRolloutProbe(proxyUrl: string, inventory: Inventory, settings: Partial<ProbeSettings> = {}): ProbeHandle {
  const s: ProbeSettings = { ...PROBE_SECTION_DEFAULTS, ...inventory.deploy.probe, ...settings };
  const base = proxyUrl.replace(/\/+$/, '');
  const started = Date.now();
  const stopper = new AbortController();
  const stopped = stopper.signal;
  const pool = new Agent({ connect: { timeout: s.timeout_ms }, connections: 4 });
  const sessionPool = new Agent({ connect: { timeout: s.timeout_ms }, connections: 2 });
  const latencies: number[] = [];
  const f: ProbeFigures = { requests: 0, failed: 0, pageLoads: 0, assetRequests: 0, asset404s: 0, sessionReads: 0, sessionsIntact: null, p50Ms: null, p99Ms: null, maxMs: null, durationMs: 0, capped: false, failures: [] };

  // One pacer for both clients: request k is sent no earlier than start + k / rate.
  const intervalMs = 1000 / s.rate_per_s;
  let nextAt = started;
  let issued = 0;
  /** Wait for the next slot. @returns false when the probe stopped or reached its cap. */
  const slot = async (): Promise<boolean> => {
    if (stopped.aborted) return false;
    if (issued >= s.max_requests) {
      f.capped = true;
      return false;
    }
    issued++;
    const at = Math.max(nextAt, Date.now());
    nextAt = at + intervalMs;
    const wait = at - Date.now();
    if (wait > 0) await sleep(wait, stopped);
    return !stopped.aborted;
  };
  const fail = (kind: ProbeFailure['kind'], path: string, error: string): void => {
    f.failed++;
    if (f.failures.length < KEEP_FAILURES) f.failures.push({ kind, path, error });
  };
  /** One counted request; null when the probe was stopped while it was in flight (not counted). */
  const send = async (url: string, init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: unknown; dispatcher: Agent }): Promise<(Outcome & { ms: number }) | null> => {
    const t0 = performance.now();
    let outcome: Outcome;
    try {
      const res = await request(url, {
        method: init.method ?? 'GET',
        headers: init.headers,
        body: init.body as never,
        dispatcher: init.dispatcher,
        signal: AbortSignal.any([stopped, AbortSignal.timeout(s.timeout_ms)]),
        headersTimeout: s.timeout_ms,
        bodyTimeout: s.timeout_ms,
      });
      outcome = { status: res.statusCode, text: await res.body.text(), setCookie: res.headers['set-cookie'] };
    } catch (e) {
      if (stopped.aborted) return null;
      outcome = { error: (e as Error).name === 'TimeoutError' ? `timed out after ${s.timeout_ms} ms` : describeNetworkError(e) };
    }
    const ms = performance.now() - t0;
    f.requests++;
    latencies.push(ms);
    return { ...outcome, ms };
  };
  const described = (o: Outcome): string => ('error' in o ? o.error : `HTTP ${o.status}`);

  const pages = async (): Promise<void> => {
    while (await slot()) {
      const page = await send(`${base}/`, { headers: { accept: 'text/html' }, dispatcher: pool });
      if (!page) return;
      f.pageLoads++;
      if ('error' in page || page.status !== 200) {
        fail('page', '/', described(page));
        continue;
      }
      for (const asset of pageAssets(page.text, `${base}/`)) {
        if (!(await slot())) return;
        const a = await send(asset, { dispatcher: pool });
        if (!a) return;
        f.assetRequests++;
        if ('error' in a || a.status !== 200) {
          if (!('error' in a) && a.status === 404) f.asset404s++;
          fail('asset', new URL(asset).pathname, described(a));
        }
      }
    }
  };

  const session = async (): Promise<void> => {
    const checks = inventory.app.checks;
    const jar = new CookieJar();
    const marker = newMarker();
    const uploadPath = checks.upload_paths[0]!;
    let created = false;
    // Reads are one in four slots at most: the session is one user among the page loads.
    const every = 4;
    for (let turn = 0; ; turn++) {
      if (turn % every !== 0) {
        await sleep(intervalMs, stopped);
        if (stopped.aborted) return;
        continue;
      }
      if (!(await slot())) return;
      if (!created) {
        const t0 = performance.now();
        const up = await uploadCsv({ base, jar, pool: sessionPool, timeoutMs: s.timeout_ms }, uploadPath, checks.upload_field, marker);
        if (stopped.aborted) return;
        f.requests++;
        latencies.push(performance.now() - t0);
        if (up.error) fail('upload', uploadPath, up.error);
        else created = true;
        continue;
      }
      const cookie = jar.header();
      const read = await send(base + checks.session_path, { headers: { accept: 'application/json', ...(cookie ? { cookie } : {}) }, dispatcher: sessionPool });
      if (!read) return;
      f.sessionReads++;
      if (!('error' in read)) jar.store(read.setCookie);
      if ('error' in read || read.status !== 200) fail('session', checks.session_path, described(read));
      else if (!read.text.includes(marker)) {
        f.sessionsIntact = false;
        fail('session', checks.session_path, 'the session no longer returns its own upload (session lost)');
      } else if (f.sessionsIntact === null) f.sessionsIntact = true;
    }
  };

  const running = Promise.allSettled([pages(), session()]);
  let result: Promise<ProbeFigures> | undefined;
  return {
    stop() {
      result ??= (async () => {
        stopper.abort();
        await running;
        await Promise.allSettled([pool.close(), sessionPool.close()]);
        latencies.sort((a, b) => a - b);
        const round = (x: number | null) => (x === null ? null : Math.round(x));
        f.p50Ms = round(percentile(latencies, 50));
        f.p99Ms = round(percentile(latencies, 99));
        f.maxMs = round(latencies.length ? latencies[latencies.length - 1]! : null);
        f.durationMs = Date.now() - started;
        return f;
      })();
      return result;
    },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}
