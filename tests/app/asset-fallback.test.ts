/**
 * The app side of the asset store (docs/ARCHITECTURE.md, "App contract"): with ASSET_FALLBACK_DIR
 * set, a hashed asset this release lacks is served from that directory (immutable cache), the
 * release's own assets always win, and nothing outside the directory or a dot file is served.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, startApp, tempDir, type RunningApp } from './support.ts';

let release: string;
let store: string;
let app: RunningApp;
let bare: RunningApp;
let ownAsset: string;

beforeAll(async () => {
  release = await buildRelease();
  store = await tempDir('store');
  ownAsset = (await readdir(join(release, 'public', 'assets'))).find((f) => f.endsWith('.js'))!;
  await mkdir(join(store, 'nested'), { recursive: true });
  await writeFile(join(store, 'other-1a2b3c4d.js'), 'export const other = 1;\n');
  await writeFile(join(store, 'nested', 'deep-5e6f7a8b.css'), 'body{}\n');
  // Same name as one of the release's own files, other body: the release's own must be served.
  await writeFile(join(store, ownAsset), 'WRONG BODY\n');
  await writeFile(join(store, '.hidden'), 'secret\n');
  await writeFile(join(store, '..', 'outside.js'), 'outside\n');
  app = await startApp(release, { ASSET_FALLBACK_DIR: store });
  bare = await startApp(release, {});
});
afterAll(async () => {
  await Promise.all([app?.stop(), bare?.stop()]);
});

describe('asset fallback (ASSET_FALLBACK_DIR)', () => {
  it("serves an asset of another release from the store, cacheable for good", async () => {
    const res = await fetch(`${app.url}/assets/other-1a2b3c4d.js`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('export const other = 1;\n');
    expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const nested = await fetch(`${app.url}/assets/nested/deep-5e6f7a8b.css`);
    expect(nested.status).toBe(200);
    expect(await nested.text()).toBe('body{}\n');
  });

  it("serves the release's own asset before the store's", async () => {
    const res = await fetch(`${app.url}/assets/${ownAsset}`);
    expect(res.status).toBe(200);
    expect(await res.text()).not.toBe('WRONG BODY\n');
  });

  it('answers 404 JSON for a name in neither, dot files and paths outside the store', async () => {
    for (const path of ['/assets/missing-00000000.js', '/assets/.hidden', '/assets/..%2Foutside.js', '/assets/%2e%2e/outside.js']) {
      const res = await fetch(`${app.url}${path}`);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { code: string }).code, path).toBe('NOT_FOUND');
    }
  });

  it('without ASSET_FALLBACK_DIR an asset the release lacks is 404', async () => {
    expect((await fetch(`${bare.url}/assets/other-1a2b3c4d.js`)).status).toBe(404);
    expect((await fetch(`${bare.url}/assets/${ownAsset}`)).status).toBe(200);
  });
});
