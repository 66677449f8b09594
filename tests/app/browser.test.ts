/**
 * The frontend in a real browser (playwright-core driving Debian's chromium) against the real
 * built server: concurrent users stay isolated, a reload keeps the session, nothing
 * session-related lands in web storage, and the chart and map render.
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
});
