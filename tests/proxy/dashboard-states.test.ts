/**
 * The dashboard tells the truth (issue 11), in headless chromium against a real proxy and real
 * upstream HTTP servers on 127.0.13.x: PARITY; ROLLING OUT while the deployer's announcement
 * (POST /admin/rollout) is up, not DRIFT; NOT IN PARITY once it is cleared; DEGRADED (never PARITY)
 * with 1 of 3 serving; STALE with "lost the proxy at HH:MM:SS" when the proxy stops; and "the
 * proxy restarted" when it comes back (sessions end with it) instead of a silent jump to sign-in.
 * Screenshots of each state go to test-results/dashboard-states/.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../proxy/index.ts';
import { ADMIN_TOKEN, admin, closeAll, request, startTestProxy, startUpstream, type TestUpstream } from './helpers.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const artifacts = join(fileURLToPath(new URL('../..', import.meta.url)), 'test-results', 'dashboard-states');
/** This file's loopback addresses (127.0.13.0/24) and the admin port, fixed so a restarted proxy has the same origin. */
const HOST = '127.0.13.1';
const ADMIN_PORT = 4131;
const R1 = '20261207T2100Z-a1a1a1a1';
const R2 = '20261207T2130Z-b2b2b2b2';
const D1 = 'a1'.repeat(32);
const D2 = 'b2'.repeat(32);

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;
let browser: Browser | undefined;

afterAll(async () => {
  await browser?.close();
  await closeAll(proxy, upstreams);
});

/** Three upstreams on 127.0.13.2-4; `serve[i]` is what upstream i reports on /version (changeable). */
async function startFleet(serve: Array<[string, string]>): Promise<TestUpstream[]> {
  return Promise.all(
    ['web-1', 'web-2', 'web-3'].map(async (name, i) => {
      const u = await startUpstream(name, 0, `127.0.13.${i + 2}`);
      u.handler = (req, res) => {
        const [release, digest] = serve[i]!;
        const text = JSON.stringify(req.url === '/version' ? { release, digest, instance: name } : { instance: name });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      };
      return u;
    }),
  );
}

function startAt(ups: TestUpstream[]): Promise<RunningProxy> {
  return startTestProxy(ups, { listen: { host: HOST, port: 0 }, adminListen: { host: HOST, port: ADMIN_PORT } });
}

async function banner(page: Page, cls: string, text: string | RegExp): Promise<void> {
  await page.locator(`#parity.${cls}`).filter({ hasText: text }).waitFor({ timeout: 20_000 });
}

async function shot(page: Page, name: string): Promise<void> {
  await mkdir(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

describe('dashboard states in a browser', () => {
  it('PARITY, ROLLING OUT, NOT IN PARITY, DEGRADED, lost proxy (STALE), proxy restarted', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_PATH)`);
    const serve: Array<[string, string]> = [[R1, D1], [R1, D1], [R1, D1]];
    upstreams = await startFleet(serve);
    proxy = await startAt(upstreams);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
    const context = await browser.newContext({ viewport: { width: 1280, height: 600 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${proxy.adminUrl}/dashboard`);
    await page.locator('#token').fill(ADMIN_TOKEN);
    await page.locator('#sign-in').click();

    // PARITY: every instance serves one digest.
    await banner(page, 'parity', `PARITY: all 3 instances serve ${R1}`);
    await shot(page, '1-parity');

    // An ordinary rolling deploy: web-1 already on R2, web-2 draining. With the announcement: ROLLING OUT, not DRIFT.
    serve[0] = [R2, D2];
    expect((await admin(proxy, 'POST', '/admin/instances/web-2/drain')).status).toBe(200);
    const announce = await request(`${proxy.adminUrl}/admin/rollout`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ release: R2, holder: 'ana@ci-1 pid 4242', done: 1, total: 3, operation: 'deploy', phase: 'web-2: draining in proxy' }),
    });
    expect(announce.status).toBe(200);
    await banner(page, 'rolling-out', `ROLLING OUT ${R2}: 1 of 3 (ana@ci-1 pid 4242)`);
    expect(await page.locator('#parity-detail').textContent()).toContain('now: web-2: draining in proxy');
    await shot(page, '2-rolling-out');

    // The rollout ended (announcement cleared) with the fleet still mixed: that is NOT IN PARITY.
    expect((await request(`${proxy.adminUrl}/admin/rollout`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).status).toBe(200);
    await banner(page, 'not-in-parity', `NOT IN PARITY: ${R1} on web-2, web-3; ${R2} on web-1`);
    await shot(page, '3-not-in-parity');

    // One digest again, but 2 of 3 unhealthy: DEGRADED, 1 of 3 serving (the page said PARITY here before).
    serve[0] = [R1, D1];
    expect((await admin(proxy, 'POST', '/admin/instances/web-2/enable')).status).toBe(200);
    upstreams[1]!.healthy = false;
    upstreams[2]!.healthy = false;
    await banner(page, 'degraded', /^DEGRADED: 1 of 3 instances serving .*web-2 \(the proxy finds it unhealthy\), web-3/);
    await shot(page, '4-degraded');
    upstreams[1]!.healthy = true;
    upstreams[2]!.healthy = true;
    await banner(page, 'parity', 'PARITY');

    // The proxy stops: the page says when it lost it, and the data is marked STALE (not a green banner).
    await proxy.close();
    proxy = undefined;
    await banner(page, 'stale', /^STALE: lost the proxy at \d\d:\d\d:\d\d; data below is from \d\d:\d\d:\d\d \(it said: PARITY/);
    await page.locator('#connection').filter({ hasText: /^Lost the proxy at \d\d:\d\d:\d\d; data below is from then/ }).waitFor({ timeout: 10_000 });
    expect(await page.locator('main.stale').count()).toBe(1);
    await shot(page, '5-lost-proxy');

    // It comes back (a new process: sessions ended with the old one): the page says so and offers sign-in.
    proxy = await startAt(upstreams);
    await page.locator('#connection').filter({ hasText: /^The proxy restarted at \d\d:\d\d:\d\d \(lost it at \d\d:\d\d:\d\d\)/ }).waitFor({ timeout: 20_000 });
    expect(page.url()).toBe(`${proxy.adminUrl}/dashboard`);
    await shot(page, '6-proxy-restarted');
    await page.locator('#sign-in-again').click();
    await page.locator('#token').waitFor({ timeout: 10_000 });
    expect(pageErrors).toEqual([]);
    await context.close();
  });
});
