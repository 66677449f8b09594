/**
 * The fleet dashboard on the admin listener, against a real proxy in front of real upstream HTTP
 * servers on 127.0.0.1 (each serving /healthz and /version): the sign-in (token only in a form
 * body, CSRF checks, an HttpOnly SameSite=Strict session cookie that opens only the dashboard's
 * read-only routes), the fleet data (versions, states, parity, drift, request rate) in one process
 * and in worker mode, and the page itself in headless chromium (playwright-core).
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CSRF_COOKIE, SESSION_COOKIE } from '../../proxy/dashboard.ts';
import { requestTotalsFromMetrics, verdictOf, type FleetSnapshot } from '../../proxy/dashboard-fleet.ts';
import type { RunningProxy } from '../../proxy/index.ts';
import { ADMIN_TOKEN, admin, request, startTestProxy, startUpstream, waitFor, type Reply, type TestUpstream, closeAll } from './helpers.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const artifacts = join(repoRoot, 'test-results', 'dashboard');
const DIGEST_A = 'a1'.repeat(32);
const DIGEST_B = 'b2'.repeat(32);
const RELEASE_A = '20261130T0900Z-a1a1a1a1';
const RELEASE_B = '20261130T0930Z-b2b2b2b2';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;
let browser: Browser | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});
afterAll(async () => {
  await browser?.close();
});

/** Upstreams `names` whose /version reports the given release and digest (per index). */
async function fleet(versions: Array<[release: string, digest: string]>, names = ['web-1', 'web-2', 'web-3']): Promise<TestUpstream[]> {
  return Promise.all(
    names.map(async (name, i) => {
      const u = await startUpstream(name);
      const [release, digest] = versions[i] ?? versions[0]!;
      const body = JSON.stringify({ release, digest, instance: name });
      const other = JSON.stringify({ instance: name });
      u.handler = (req, res) => {
        const text = req.url === '/version' ? body : other;
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      return u;
    }),
  );
}

/** A pino logger writing into `lines` (to check what a refused sign-in logs). */
function capturingLogger(lines: string[]): pino.Logger {
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString('utf8'));
      cb();
    },
  });
  return pino({ level: 'info' }, stream);
}

function setCookie(reply: Reply, name: string): string | undefined {
  return (reply.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${name}=`));
}

/** Fetch the sign-in form: its CSRF cookie and the matching hidden field. */
async function signInForm(p: RunningProxy): Promise<{ csrf: string; reply: Reply }> {
  const reply = await request(`${p.adminUrl}/dashboard`);
  const cookie = setCookie(reply, CSRF_COOKIE);
  const field = /name="csrf" value="([^"]+)"/.exec(reply.body)?.[1];
  expect(cookie?.split(';')[0]).toBe(`${CSRF_COOKIE}=${field}`);
  return { csrf: field!, reply };
}

/** POST the sign-in form as a browser on the dashboard page would. */
async function postSignIn(
  p: RunningProxy,
  token: string,
  opts: { csrfCookie?: string | null; csrfField?: string | null; origin?: string | null; query?: string } = {},
): Promise<Reply> {
  const { csrf } = await signInForm(p);
  const cookieValue = opts.csrfCookie === undefined ? csrf : opts.csrfCookie;
  const fieldValue = opts.csrfField === undefined ? csrf : opts.csrfField;
  const form = new URLSearchParams({ token });
  if (fieldValue !== null) form.set('csrf', fieldValue);
  const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/x-www-form-urlencoded' };
  if (cookieValue !== null) headers.cookie = `${CSRF_COOKIE}=${cookieValue}`;
  const origin = opts.origin === undefined ? p.adminUrl : opts.origin;
  if (origin !== null) headers.origin = origin;
  return request(`${p.adminUrl}/dashboard/sign-in${opts.query ?? ''}`, { method: 'POST', headers, body: form.toString() });
}

/** Sign in with the right token; returns the `name=value` session cookie. */
async function sessionCookie(p: RunningProxy): Promise<string> {
  const r = await postSignIn(p, ADMIN_TOKEN);
  expect(r.status).toBe(303);
  return setCookie(r, SESSION_COOKIE)!.split(';')[0]!;
}

async function fleetJson(p: RunningProxy, cookie: string): Promise<FleetSnapshot> {
  const r = await request(`${p.adminUrl}/dashboard/fleet.json`, { headers: { cookie } });
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as FleetSnapshot;
}

/** Wait until the fleet data satisfies `check` (bounded; no timing assertion). */
async function waitForFleet(p: RunningProxy, cookie: string, what: string, check: (s: FleetSnapshot) => boolean): Promise<FleetSnapshot> {
  let last: FleetSnapshot | undefined;
  await waitFor(what, async () => check((last = await fleetJson(p, cookie))), 200, 50);
  return last!;
}

describe('fleet dashboard: sign-in', () => {
  it('without a session shows only the sign-in form, and the data routes refuse', async () => {
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams);
    for (const path of ['/', '/dashboard', `/?token=${ADMIN_TOKEN}`, `/dashboard?token=${ADMIN_TOKEN}&access_token=${ADMIN_TOKEN}`]) {
      const r = await request(`${proxy.adminUrl}${path}`);
      expect(r.status, path).toBe(200);
      expect(r.headers['content-type']).toMatch(/^text\/html/);
      expect(r.body).toContain('action="/dashboard/sign-in"');
      expect(r.body).toContain('method="post"');
      for (const leak of ['web-1', DIGEST_A.slice(0, 8), RELEASE_A, upstreams[0]!.url]) expect(r.body).not.toContain(leak);
      // A token in the URL never signs anyone in.
      expect(setCookie(r, SESSION_COOKIE)).toBeUndefined();
      expect(r.headers['content-security-policy']).toContain("default-src 'self'");
    }
    for (const path of ['/dashboard/fleet.json', '/dashboard/events', `/dashboard/fleet.json?token=${ADMIN_TOKEN}`]) {
      const r = await request(`${proxy.adminUrl}${path}`);
      expect(r.status, path).toBe(401);
      expect(r.body).not.toContain('web-1');
    }
    // The bearer token still works for scripts; the rest of the admin API is untouched.
    expect((await request(`${proxy.adminUrl}/dashboard/fleet.json`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(200);
    expect((await admin(proxy, 'GET', '/admin/instances', null)).status).toBe(401);
  });

  it('a wrong token gets 401 and a log line without the token; the token in the query string is ignored', async () => {
    const lines: string[] = [];
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams, { logger: capturingLogger(lines) });
    const wrong = 'not-the-admin-token-but-long-enough';
    const r = await postSignIn(proxy, wrong);
    expect(r.status).toBe(401);
    expect(r.body).toContain('Wrong token');
    expect(setCookie(r, SESSION_COOKIE)).toBeUndefined();
    // Right token only in the query string, an empty one in the body: refused.
    const q = await postSignIn(proxy, '', { query: `?token=${encodeURIComponent(ADMIN_TOKEN)}` });
    expect(q.status).toBe(401);
    expect(setCookie(q, SESSION_COOKIE)).toBeUndefined();
    // A refused cross-site attempt logs the Referer's origin only, never its query string.
    const { csrf } = await signInForm(proxy);
    const cross = await request(`${proxy.adminUrl}/dashboard/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `${CSRF_COOKIE}=${csrf}`, referer: `http://evil.example/x?token=${ADMIN_TOKEN}` },
      body: new URLSearchParams({ token: ADMIN_TOKEN, csrf }).toString(),
    });
    expect(cross.status).toBe(403);
    const log = lines.join('');
    expect(log).toContain('"referer":"http://evil.example"');
    expect(log).toContain('dashboard sign-in refused: wrong token');
    expect(log).not.toContain(wrong);
    expect(log).not.toContain(ADMIN_TOKEN);
  });

  it('refuses a sign-in POST from another origin, without Origin/Referer, or without the form token', async () => {
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams);
    const cases: Array<[string, Parameters<typeof postSignIn>[2]]> = [
      ['cross-site origin', { origin: 'http://evil.example' }],
      ['no origin, no referer', { origin: null }],
      ['no csrf cookie', { csrfCookie: null }],
      ['no csrf field', { csrfField: null }],
      ['csrf mismatch', { csrfField: 'x'.repeat(32) }],
    ];
    for (const [what, opts] of cases) {
      const r = await postSignIn(proxy, ADMIN_TOKEN, opts);
      expect(r.status, what).toBe(403);
      expect(setCookie(r, SESSION_COOKIE), what).toBeUndefined();
    }
    // A same-origin Referer stands in for a missing Origin.
    const { csrf } = await signInForm(proxy);
    const viaReferer = await request(`${proxy.adminUrl}/dashboard/sign-in`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: `${CSRF_COOKIE}=${csrf}`, referer: `${proxy.adminUrl}/dashboard` },
      body: new URLSearchParams({ token: ADMIN_TOKEN, csrf }).toString(),
    });
    expect(viaReferer.status).toBe(303);
  });

  it('the right token sets an HttpOnly SameSite=Strict session cookie that opens the dashboard only, until sign-out', async () => {
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams);
    const r = await postSignIn(proxy, ADMIN_TOKEN);
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/dashboard');
    const raw = setCookie(r, SESSION_COOKIE)!;
    const attrs = raw.split(';').map((s) => s.trim());
    expect(attrs).toEqual(expect.arrayContaining(['HttpOnly', 'SameSite=Strict', 'Path=/', 'Max-Age=43200']));
    const cookie = attrs[0]!;
    const value = cookie.slice(SESSION_COOKIE.length + 1);
    expect(value.length).toBeGreaterThanOrEqual(40);
    expect(value).not.toContain(ADMIN_TOKEN);
    expect(Buffer.from(value, 'base64url').toString('latin1')).not.toContain(ADMIN_TOKEN);
    // A second sign-in gets a different session.
    expect(await sessionCookie(proxy)).not.toBe(cookie);

    const page = await request(`${proxy.adminUrl}/dashboard`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.body).toContain('id="fleet"');
    expect(page.body).toContain('src="/dashboard/app.js"');
    const data = await fleetJson(proxy, cookie);
    expect(data.instances.map((i) => i.name)).toEqual(['web-1', 'web-2', 'web-3']);
    // The cookie is no bearer token: the rest of the admin API refuses it.
    for (const [method, path] of [['GET', '/admin/instances'], ['GET', '/metrics'], ['POST', '/admin/instances/web-1/drain']] as const) {
      expect((await request(`${proxy.adminUrl}${path}`, { method, headers: { cookie } })).status, path).toBe(401);
    }
    expect(proxy.instances()[0]!.state).toBe('enabled');
    // A made-up session id opens nothing.
    expect((await request(`${proxy.adminUrl}/dashboard/fleet.json`, { headers: { cookie: `${SESSION_COOKIE}=${'A'.repeat(43)}` } })).status).toBe(401);

    const out = await request(`${proxy.adminUrl}/dashboard/sign-out`, { method: 'POST', headers: { cookie, origin: proxy.adminUrl } });
    expect(out.status).toBe(303);
    expect(setCookie(out, SESSION_COOKIE)).toContain('Max-Age=0');
    expect((await request(`${proxy.adminUrl}/dashboard/fleet.json`, { headers: { cookie } })).status).toBe(401);
    expect((await request(`${proxy.adminUrl}/dashboard`, { headers: { cookie } })).body).toContain('action="/dashboard/sign-in"');
  });
});

describe('fleet dashboard: data', () => {
  it('shows PARITY when every healthy instance reports the same digest, with versions, states and request rates', async () => {
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams);
    const cookie = await sessionCookie(proxy);
    const first = await fleetJson(proxy, cookie);
    expect(first.verdict).toMatchObject({ state: 'parity', release: RELEASE_A, digest: DIGEST_A, headline: `PARITY: all 3 instances serve ${RELEASE_A}` });
    expect(first.instances).toEqual(
      upstreams.map((u) =>
        expect.objectContaining({ name: u.name, url: u.url, state: 'enabled', healthy: true, inflight: 0, version: { release: RELEASE_A, digest: DIGEST_A } }),
      ),
    );
    for (let i = 0; i < 30; i++) expect((await request(`${proxy.url}/x`)).status).toBe(200);
    const busy = await waitForFleet(proxy, cookie, 'a request rate on every instance', (s) => s.instances.every((i) => (i.rate ?? 0) > 0));
    expect(busy.rateWindowS).toBeGreaterThan(0);
  });

  it('shows NOT IN PARITY naming each instance when digests differ; an unhealthy instance makes it DEGRADED, never PARITY', async () => {
    upstreams = await fleet([
      [RELEASE_A, DIGEST_A],
      [RELEASE_B, DIGEST_B],
      [RELEASE_A, DIGEST_A],
    ]);
    proxy = await startTestProxy(upstreams);
    const cookie = await sessionCookie(proxy);
    const drift = await fleetJson(proxy, cookie);
    expect(drift.verdict.state).toBe('not-in-parity');
    expect(drift.verdict.headline).toBe(`NOT IN PARITY: ${RELEASE_A} on web-1, web-3; ${RELEASE_B} on web-2`);
    upstreams[1]!.healthy = false;
    const back = await waitForFleet(proxy, cookie, 'web-2 unhealthy', (s) => s.instances[1]!.healthy === false);
    // Still two digests answering /version: not in parity, and web-2 named as not serving.
    expect(back.verdict).toMatchObject({ state: 'not-in-parity', headline: expect.stringContaining('not serving: web-2 (the proxy finds it unhealthy)') });
  });

  it('streams fleet events over SSE with the session cookie', async () => {
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams);
    const cookie = await sessionCookie(proxy);
    const events = await new Promise<{ headers: http.IncomingHttpHeaders; snaps: FleetSnapshot[] }>((resolve, reject) => {
      const req = http.get(`${proxy!.adminUrl}/dashboard/events`, { headers: { cookie }, agent: false }, (res) => {
        let buf = '';
        const snaps: FleetSnapshot[] = [];
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let end: number;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const frame = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const data = /^event: fleet\ndata: (.*)$/m.exec(frame);
            if (data) snaps.push(JSON.parse(data[1]!) as FleetSnapshot);
          }
          if (snaps.length >= 2) {
            req.destroy();
            resolve({ headers: res.headers, snaps });
          }
        });
      });
      req.on('error', reject);
    });
    expect(events.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(events.headers['content-length']).toBeUndefined();
    expect(events.snaps[0]!.instances.map((i) => i.name)).toEqual(['web-1', 'web-2', 'web-3']);
  });

  it('works in worker mode: same data through the cluster primary, drain shows up', async () => {
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams, {}, { workers: 2 });
    const cookie = await sessionCookie(proxy);
    const data = await fleetJson(proxy, cookie);
    expect(data.verdict.headline).toBe(`PARITY: all 3 instances serve ${RELEASE_A}`);
    expect(data.instances.map((i) => [i.name, i.state, i.healthy])).toEqual([
      ['web-1', 'enabled', true],
      ['web-2', 'enabled', true],
      ['web-3', 'enabled', true],
    ]);
    for (let i = 0; i < 30; i++) expect((await request(`${proxy.url}/x`)).status).toBe(200);
    await waitForFleet(proxy, cookie, 'request rate summed over workers', (s) => s.instances.some((i) => (i.rate ?? 0) > 0));
    expect((await admin(proxy, 'POST', '/admin/instances/web-2/drain')).status).toBe(200);
    const drained = await fleetJson(proxy, cookie);
    expect(drained.instances[1]).toMatchObject({ name: 'web-2', state: 'draining' });
  });
});

describe('fleet dashboard: helpers', () => {
  it('sums request counters per instance from Prometheus text', () => {
    const text = [
      '# TYPE lockstep_proxy_requests_total counter',
      'lockstep_proxy_requests_total{instance="a",status_class="2xx"} 5',
      'lockstep_proxy_requests_total{instance="a",status_class="5xx"} 2',
      'lockstep_proxy_requests_total{status_class="2xx",instance="b"} 1',
      'lockstep_proxy_requests_total{instance="none",status_class="5xx"} 9',
      'lockstep_proxy_retries_total{instance="a"} 4',
    ].join('\n');
    expect(requestTotalsFromMetrics(text)).toEqual(new Map([['a', 7], ['b', 1]]));
  });

  it('verdict: DEGRADED when an instance is unhealthy or silent, NOT IN PARITY for two digests (the shared fleetVerdict)', () => {
    const v = (digest: string | null) => ({ release: digest && `rel-${digest.slice(0, 2)}`, digest });
    const row = (name: string, healthy: boolean, version: { release: string | null; digest: string | null; error?: string }) => ({ name, healthy, ejected: false, state: 'enabled' as const, version });
    expect(verdictOf([row('a', false, v(DIGEST_A))]).state).toBe('degraded');
    expect(verdictOf([row('a', true, v(DIGEST_A)), row('b', true, { ...v(null), error: 'ECONNREFUSED' })])).toMatchObject({
      state: 'degraded',
      headline: 'DEGRADED: 1 of 2 instances serving rel-a1; not serving: b (/version: ECONNREFUSED)',
    });
    expect(verdictOf([row('a', true, v(DIGEST_A)), row('b', true, v(DIGEST_B))]).state).toBe('not-in-parity');
  });
});

describe('fleet dashboard in a browser', () => {
  it('signs in through the form, shows three instances, and flips one to draining without a reload', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_PATH)`);
    upstreams = await fleet([[RELEASE_A, DIGEST_A]]);
    proxy = await startTestProxy(upstreams);
    browser ??= await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 560 } });
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(msg.text());
      });
      page.on('pageerror', (err) => errors.push(err.message));
      await page.goto(`${proxy.adminUrl}/`);
      await page.locator('#token').fill('wrong-token-wrong-token');
      await page.locator('#sign-in').click();
      await page.locator('#sign-in-error').filter({ hasText: 'Wrong token' }).waitFor({ timeout: 10_000 });

      // The 401 of the refused attempt is expected; from here on the console must stay clean.
      errors.length = 0;
      await page.locator('#token').fill(ADMIN_TOKEN);
      await page.locator('#sign-in').click();
      await page.locator('#parity.parity').filter({ hasText: `PARITY: all 3 instances serve ${RELEASE_A}` }).waitFor({ timeout: 15_000 });
      expect(page.url()).toBe(`${proxy.adminUrl}/dashboard`);
      const rows = page.locator('#fleet tbody tr');
      await waitFor('three rows', async () => (await rows.count()) === 3, 100, 100);
      expect(await page.locator('#fleet tbody td.name').allTextContents()).toEqual(['web-1', 'web-2', 'web-3']);
      expect(await page.locator('#fleet tbody td.state').allTextContents()).toEqual(['enabled', 'enabled', 'enabled']);
      expect(await page.locator('#fleet tbody td.release').allTextContents()).toEqual([RELEASE_A, RELEASE_A, RELEASE_A]);
      const cookie = (await context.cookies()).find((c) => c.name === SESSION_COOKIE);
      expect(cookie).toMatchObject({ name: SESSION_COOKIE, httpOnly: true, sameSite: 'Strict' });
      expect(await page.evaluate(() => document.cookie)).not.toContain(cookie!.value);
      // Some traffic so the rate column has something to show in the screenshot.
      for (let i = 0; i < 30; i++) await request(`${proxy.url}/x`);

      const drained = await admin(proxy, 'POST', '/admin/instances/web-2/drain');
      expect(drained.status).toBe(200);
      await page.locator('#fleet tr[data-instance="web-2"] td.state').filter({ hasText: 'draining' }).waitFor({ timeout: 15_000 });
      expect(await page.locator('#fleet tbody td.state').allTextContents()).toEqual(['enabled', 'draining', 'enabled']);
      await page.locator('#fleet tr[data-instance="web-1"] td.rate').filter({ hasNotText: '\u2013' }).waitFor({ timeout: 15_000 });
      await mkdir(artifacts, { recursive: true });
      await page.screenshot({ path: join(artifacts, 'fleet.png'), fullPage: true });
      expect(errors).toEqual([]);

      await page.locator('#sign-out').click();
      await page.locator('#token').waitFor({ timeout: 10_000 });
    } finally {
      await context.close();
    }
  });

  it('shows NOT IN PARITY in red and marks the odd instance', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_PATH)`);
    upstreams = await fleet([
      [RELEASE_A, DIGEST_A],
      [RELEASE_B, DIGEST_B],
      [RELEASE_A, DIGEST_A],
    ]);
    proxy = await startTestProxy(upstreams);
    browser ??= await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 560 } });
    try {
      const page = await context.newPage();
      await page.goto(`${proxy.adminUrl}/dashboard`);
      await page.locator('#token').fill(ADMIN_TOKEN);
      await page.locator('#sign-in').click();
      await page.locator('#parity.not-in-parity').filter({ hasText: 'NOT IN PARITY:' }).waitFor({ timeout: 15_000 });
      expect(await page.locator('#fleet tr.odd-digest td.name').allTextContents()).toEqual(['web-2']);
      await mkdir(artifacts, { recursive: true });
      await page.screenshot({ path: join(artifacts, 'drift.png'), fullPage: true });
    } finally {
      await context.close();
    }
  });
});
