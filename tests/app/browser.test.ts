/**
 * The frontend in a real browser (playwright-core driving Debian's chromium) against the real
 * built server: concurrent users stay isolated, a reload keeps the session, nothing
 * session-related lands in web storage, the chart and map render, a new upload never shows the
 * previous dataset's results (delayed and failed analysis answers), a ranking without a malaria
 * burden measure says so, and sign-out empties the page and the server.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, realDataDir, repoRoot, startApp, tempDir, type RunningApp } from './support.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const artifacts = join(repoRoot, 'test-results', 'app-browser');
let app: RunningApp;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  const release = await buildRelease();
  await writeFile(join(release, 'manifest.json'), JSON.stringify({ release: '20261130T0900Z-feedbeef', digest: 'feedbeef'.repeat(8) }));
  app = await startApp(release);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  await mkdir(artifacts, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
  await app?.stop();
});

/** Console errors per page (a CSP violation or a React error shows up here). */
const consoleErrors = new WeakMap<Page, string[]>();

async function openApp(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  const errors: string[] = [];
  consoleErrors.set(page, errors);
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(app.url);
  await page.getByTestId('release').filter({ hasText: '20261130T0900Z-feedbeef' }).waitFor();
  return page;
}

async function uploadIn(page: Page, csv: string, zip?: string): Promise<void> {
  await page.getByTestId('csv-input').setInputFiles(csv);
  if (zip) await page.getByTestId('shapefile-input').setInputFiles(zip);
  await page.getByTestId('upload-button').click();
  await page.getByTestId('ranked-table').waitFor();
}

async function wardNames(page: Page): Promise<string[]> {
  return page.locator('[data-testid=ranked-table] td.ward').allTextContents();
}

describe('the app in a browser', () => {
  it('two users uploading at the same time each see only their own wards', async () => {
    const dir = await tempDir('browser');
    const csvA = join(dir, 'a.csv');
    const csvB = join(dir, 'b.csv');
    await writeFile(csvA, 'WardName,pfpr,rain\nAlpha-Only-A,0.3,100\nBravo-Only-A,0.2,90\nCharlie-Only-A,0.1,80\n');
    await writeFile(csvB, 'WardName,pfpr,rain\nXray-Only-B,0.1,70\nYankee-Only-B,0.4,60\n');
    const [ctxA, ctxB] = await Promise.all([browser.newContext(), browser.newContext()]);
    try {
      const [pageA, pageB] = await Promise.all([openApp(ctxA), openApp(ctxB)]);
      await Promise.all([uploadIn(pageA, csvA), uploadIn(pageB, csvB)]);
      const [namesA, namesB] = await Promise.all([wardNames(pageA), wardNames(pageB)]);
      expect(namesA.sort()).toEqual(['Alpha-Only-A', 'Bravo-Only-A', 'Charlie-Only-A']);
      expect(namesB.sort()).toEqual(['Xray-Only-B', 'Yankee-Only-B']);
      const [cookieA] = await ctxA.cookies();
      const [cookieB] = await ctxB.cookies();
      expect(cookieA!.value).not.toBe(cookieB!.value);
      // After a reload each still sees its own data, from the cookie alone.
      await Promise.all([pageA.reload(), pageB.reload()]);
      await Promise.all([pageA.getByTestId('ranked-table').waitFor(), pageB.getByTestId('ranked-table').waitFor()]);
      expect((await wardNames(pageA)).sort()).toEqual(['Alpha-Only-A', 'Bravo-Only-A', 'Charlie-Only-A']);
      expect((await wardNames(pageB)).sort()).toEqual(['Xray-Only-B', 'Yankee-Only-B']);
    } finally {
      await Promise.all([ctxA.close(), ctxB.close()]);
    }
  });

  it('keeps the session id out of page scripts and web storage', async () => {
    const ctx = await browser.newContext();
    try {
      const page = await openApp(ctx);
      await uploadIn(page, join(realDataDir, 'Niger_plus.csv'));
      const [cookie] = await ctx.cookies();
      expect(cookie).toMatchObject({ name: 'analysis_session', httpOnly: true, sameSite: 'Lax' });
      const seen = await page.evaluate(() => ({
        cookie: document.cookie,
        local: JSON.stringify({ ...localStorage }),
        session: JSON.stringify({ ...sessionStorage }),
        localCount: localStorage.length,
        sessionCount: sessionStorage.length,
      }));
      expect(seen.cookie).not.toContain(cookie!.value);
      expect(seen.local).not.toContain(cookie!.value);
      expect(seen.session).not.toContain(cookie!.value);
      expect(seen.local).not.toMatch(/session/i);
      expect(seen.session).not.toMatch(/session/i);
      await page.reload();
      await page.getByTestId('ranked-table').waitFor();
      expect(await page.getByTestId('ward-count').textContent()).toBe('275');
    } finally {
      await ctx.close();
    }
  });

  it('analyses the real Niger pair: chart, choropleth map, sortable table, download', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 1800 } });
    try {
      const page = await openApp(ctx);
      await uploadIn(page, join(realDataDir, 'Niger_plus.csv'), join(realDataDir, 'Niger_State.zip'));
      await page.getByTestId('risk-map').waitFor();
      expect(await page.getByTestId('shapefile-summary').textContent()).toContain('275 of 275 wards matched');
      const shapes = page.locator('[data-testid=ward-shape]');
      expect(await shapes.count()).toBe(275);
      const categories = await shapes.evaluateAll((els) => els.map((e) => e.getAttribute('data-category')));
      expect(categories.filter((c) => c === 'high')).toHaveLength(92);
      expect(categories.filter((c) => c === 'none')).toHaveLength(0);
      // Every ward has a drawn outline inside the map (a wrongly wound ring would span the globe).
      const boxes = await shapes.evaluateAll((els) => els.map((e) => (e as SVGGraphicsElement).getBBox()).map((b) => [b.width, b.height]));
      for (const [w, h] of boxes) {
        expect(w).toBeGreaterThan(0);
        expect(w).toBeLessThan(640);
        expect(h).toBeLessThan(520);
      }
      expect(await page.locator('[data-testid=top-chart] [data-testid=bar]').count()).toBe(15);
      await page.screenshot({ path: join(artifacts, 'niger-composite.png'), fullPage: true });

      const firstRank = async () => (await page.locator('[data-testid=ward-row] td').first().textContent())!;
      expect(await firstRank()).toBe('1');
      await page.getByTestId('sort-rank').click();
      expect(await firstRank()).toBe('275');

      const href = await page.getByTestId('download-csv').getAttribute('href');
      const csv = await page.evaluate(async (url) => (await fetch(url!)).text(), href);
      expect(csv.split('\r\n').filter(Boolean)).toHaveLength(276);

      const report = page.getByTestId('indicator-report');
      await report.locator('summary').click();
      expect(await report.textContent()).toMatch(/distance_to_waterless risk/);

      await page.getByTestId('method').selectOption('pca');
      await page.getByTestId('run-analysis').click();
      await page.getByTestId('categories').filter({ hasText: 'PC1 explains' }).waitFor();
      await page.screenshot({ path: join(artifacts, 'niger-pca.png'), fullPage: true });
      expect(consoleErrors.get(page)).toEqual([]);
    } finally {
      await ctx.close();
    }
  });

  it('shows what is wrong with a bad CSV, and where', async () => {
    const ctx = await browser.newContext();
    try {
      const page = await openApp(ctx);
      const bad = join(await tempDir('browser'), 'bad.csv');
      await writeFile(bad, 'WardName,pfpr\nA,0.1\nB,0.2,9\n');
      await page.getByTestId('csv-input').setInputFiles(bad);
      await page.getByTestId('upload-button').click();
      const alert = page.getByTestId('error');
      await alert.waitFor();
      expect(await alert.textContent()).toMatch(/bad\.csv.*line 3/);
      expect(await ctx.cookies()).toEqual([]);
    } finally {
      await ctx.close();
    }
  });

  it('loads the shipped sample data with one click', async () => {
    const ctx = await browser.newContext();
    try {
      const page = await openApp(ctx);
      await page.getByTestId('sample-button').click();
      await page.getByTestId('risk-map').waitFor();
      expect(await page.locator('[data-testid=ward-shape]').count()).toBe(60);
      await page.screenshot({ path: join(artifacts, 'sample.png'), fullPage: true });
    } finally {
      await ctx.close();
    }
  });

  it('a new upload clears the previous ranking, chart and map at once; a delayed or failed analysis never shows them again', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 1400 } });
    try {
      const page = await openApp(ctx);
      await uploadIn(page, join(realDataDir, 'Niger_plus.csv'), join(realDataDir, 'Niger_State.zip'));
      await page.getByTestId('risk-map').waitFor();
      await page.screenshot({ path: join(artifacts, 'switch-1-first-dataset.png'), fullPage: true });
      const dir = await tempDir('browser');
      const second = join(dir, 'second.csv');
      const third = join(dir, 'third.csv');
      await writeFile(second, 'WardName,pfpr,rain\nSecond-File-A,0.3,100\nSecond-File-B,0.1,50\n');
      await writeFile(third, 'WardName,pfpr\nThird-File-A,0.2\nThird-File-B,0.4\n');

      // 1. The new file's analysis is held back: its summary is up, nothing of Niger is.
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let held = 0;
      await page.route('**/api/analysis', async (route) => {
        if (route.request().method() !== 'POST') return route.continue();
        held += 1;
        await gate;
        await route.continue();
      });
      await page.getByTestId('csv-input').setInputFiles(second);
      await page.getByTestId('shapefile-input').setInputFiles([]);
      await page.getByTestId('upload-button').click();
      await page.getByTestId('summary').locator('h2', { hasText: 'second.csv' }).waitFor();
      await expect.poll(() => held, { timeout: 30_000 }).toBe(1);
      for (const id of ['results', 'ranked-table', 'top-chart', 'risk-map']) expect(await page.getByTestId(id).count(), id).toBe(0);
      await page.screenshot({ path: join(artifacts, 'switch-2-analysis-delayed.png'), fullPage: true });
      release();
      await page.getByTestId('ranked-table').waitFor();
      expect((await wardNames(page)).sort()).toEqual(['Second-File-A', 'Second-File-B']);
      expect(await page.getByTestId('risk-map').count()).toBe(0);
      await page.unroute('**/api/analysis');

      // 2. The next file's analysis fails: the view stays empty with the error.
      await page.route('**/api/analysis', (route) =>
        route.request().method() !== 'POST'
          ? route.continue()
          : route.fulfill({ status: 500, contentType: 'application/json', body: '{"status":"error","code":"INTERNAL","message":"analysis failed (test)"}' }),
      );
      await page.getByTestId('csv-input').setInputFiles(third);
      await page.getByTestId('upload-button').click();
      await page.getByTestId('error').filter({ hasText: 'analysis failed (test)' }).waitFor();
      await page.getByTestId('summary').locator('h2', { hasText: 'third.csv' }).waitFor();
      for (const id of ['results', 'ranked-table', 'top-chart', 'risk-map']) expect(await page.getByTestId(id).count(), id).toBe(0);
      expect(await page.locator('body').textContent()).not.toContain('Second-File');
      await page.screenshot({ path: join(artifacts, 'switch-3-analysis-failed.png'), fullPage: true });
      await page.unroute('**/api/analysis');
    } finally {
      await ctx.close();
    }
  });

  it('flags a ranking without a malaria burden measure; sign-out deletes the session and empties the page', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 1100 } });
    try {
      const page = await openApp(ctx);
      const csv = join(await tempDir('browser'), 'environment.csv');
      await writeFile(csv, 'WardName,mean_rainfall,elevation,population\nRain-Ward-A,100,200,5000\nRain-Ward-B,80,500,9000\nRain-Ward-C,90,300,1000\n');
      await uploadIn(page, csv);
      expect(await page.getByTestId('no-burden-warning').textContent()).toMatch(/^Not a malaria risk ranking: no malaria burden measure/);
      const report = page.getByTestId('indicator-report');
      await report.locator('summary').click();
      expect(await page.getByTestId('recognised-as').allTextContents()).toEqual([
        'rainfall (covariate; name matched “mean_rainfall”)',
        'elevation (covariate; name matched “elevation”)',
      ]);
      expect(await page.getByTestId('not-used').textContent()).toMatch(/population \(a size measure \(population\), not a risk: never a default\)/);
      await page.screenshot({ path: join(artifacts, 'no-burden-measure.png'), fullPage: true });

      const [cookie] = await ctx.cookies();
      expect(cookie?.name).toBe('analysis_session');
      await page.getByTestId('sign-out').click();
      await expect.poll(async () => (await ctx.cookies()).length, { timeout: 30_000 }).toBe(0);
      for (const id of ['summary', 'results', 'ranked-table', 'sign-out']) expect(await page.getByTestId(id).count(), id).toBe(0);
      // The server forgot it: the old cookie names nothing, and a reload shows an empty page.
      expect(await page.evaluate(async () => (await fetch('/api/session/status')).json())).toMatchObject({ active: false });
      const direct = await fetch(`${app.url}/api/session`, { headers: { cookie: `analysis_session=${cookie!.value}` } });
      expect(direct.status).toBe(401);
      await page.reload();
      await page.getByTestId('release').filter({ hasText: '20261130T0900Z-feedbeef' }).waitFor();
      expect(await page.getByTestId('summary').count()).toBe(0);
      await page.screenshot({ path: join(artifacts, 'signed-out.png'), fullPage: true });
      expect(consoleErrors.get(page)).toEqual([]);
    } finally {
      await ctx.close();
    }
  });
});
