// Mixed-version assets (issue 12, item 1): while a rolling deploy is stopped after its canary, a
// cookie-less page load through the real proxy may come from the new release and its hashed
// assets be asked of an instance still on the old one (and the other way round). Every asset a
// page references must load, with the body the page's own release built. A tab opened before the
// deploy must still load its lazy chunk afterwards. Three real sshd hosts, the real app, the real
// proxy; the rollout is held before its second batch by wrapping the real proxy control.
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRelease } from '../../deployer/build/build.ts';
import { artifactsDir } from '../../deployer/build/release-source.ts';
import type { Manifest } from '../../deployer/build/manifest.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import type { ProxyControl } from '../../deployer/rollout/rollout.ts';
import { repairDrift } from '../../deployer/drift/repair.ts';
import { renderDriftText } from '../../deployer/drift/render.ts';
import { scanDrift } from '../../deployer/drift/scan.ts';
import { repoRoot, startE2eFleet, versionOf, type E2eFleet } from './support.ts';

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface TestRelease {
  id: string;
  manifest: Manifest;
  /** URL path of a hashed chunk the release has but its page does not reference (loaded lazily). */
  lazy: string;
}

let fleet: E2eFleet;
let relA: TestRelease;
let relB: TestRelease;
let buildBase: string;
const log: string[] = [];
const progress = (i: string, l: string) => void log.push(`[${i}] ${l}`);

/**
 * A variant of the built app whose frontend differs: an extra hashed module referenced by its
 * index.html, and a hashed lazy chunk referenced by nothing on the page (as a code-split import).
 */
function makeVariant(built: string, dir: string, tag: string): { lazy: string } {
  cpSync(built, dir, { recursive: true });
  const extra = `export const variant = ${JSON.stringify(tag)};\n`;
  const lazy = `export const lazy = ${JSON.stringify(tag)};\n`;
  const extraName = `extra-${sha(extra).slice(0, 8)}.js`;
  const lazyName = `lazy-${sha(lazy).slice(0, 8)}.js`;
  writeFileSync(join(dir, 'public', 'assets', extraName), extra);
  writeFileSync(join(dir, 'public', 'assets', lazyName), lazy);
  const index = join(dir, 'public', 'index.html');
  const html = readFileSync(index, 'utf8');
  writeFileSync(index, html.replace('</head>', `  <script type="module" crossorigin src="/assets/${extraName}"></script>\n  </head>`));
  return { lazy: `/assets/${lazyName}` };
}

async function buildReleases(): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'lockstep-assets-'));
  buildBase = base;
  const built = join(base, 'built');
  execFileSync(process.execPath, [join(repoRoot, 'app/build.mjs'), '--out', built]);
  const out = artifactsDir(fleet.inventory);
  const make = async (tag: string, minute: string): Promise<TestRelease> => {
    const { lazy } = makeVariant(built, join(base, tag), tag);
    const r = await packageRelease(join(base, tag), out, { revision: null, dirty: false, time: `2026-11-30T10:${minute}:00Z`, pinned: true });
    return { id: r.release, manifest: r.manifest, lazy };
  };
  relA = await make('release-a', '01');
  relB = await make('release-b', '02');
}

/** `/assets/...` paths referenced by script src and link href attributes of a page. */
function referencedAssets(html: string): string[] {
  const out = new Set<string>();
  for (const m of html.matchAll(/<(?:script|link)\b[^>]*?\b(?:src|href)="(\/assets\/[^"]+)"/g)) out.add(m[1]!);
  return [...out];
}

function fileSha(m: Manifest, path: string): string | undefined {
  return m.files.find((f) => f.path === path)?.sha256;
}

interface PageLoadResult {
  pages: number;
  assetRequests: number;
  /** Asset answers that were not 200, with the release of the page that referenced them. */
  notFound: { asset: string; status: number; page: string }[];
  /** Asset bodies that differ from the manifest of the page's release. */
  wrongBody: { asset: string; page: string }[];
  /** Pages whose index.html matched neither release. */
  unknownPages: number;
  pagesByRelease: Map<string, number>;
}

/**
 * Cookie-less page loads through the proxy: GET /, tell from the page's sha256 which release
 * built it, then GET every asset it references `rounds` times and compare each body with that
 * release's manifest. Bounded by `pages` loads.
 */
async function loadPages(proxyUrl: string, pages: number, rounds: number): Promise<PageLoadResult> {
  const releases = [relA, relB];
  const agent = new Agent({ connections: 8 });
  const r: PageLoadResult = { pages: 0, assetRequests: 0, notFound: [], wrongBody: [], unknownPages: 0, pagesByRelease: new Map() };
  const clients = Array.from({ length: 4 }, async () => {
    while (r.pages < pages) {
      r.pages++;
      const page = await request(`${proxyUrl}/`, { dispatcher: agent });
      const html = await page.body.text();
      expect(page.statusCode).toBe(200);
      const rel = releases.find((x) => fileSha(x.manifest, 'public/index.html') === sha(html));
      if (!rel) {
        r.unknownPages++;
        continue;
      }
      r.pagesByRelease.set(rel.id, (r.pagesByRelease.get(rel.id) ?? 0) + 1);
      for (let round = 0; round < rounds; round++) {
        for (const asset of referencedAssets(html)) {
          r.assetRequests++;
          const res = await request(`${proxyUrl}${asset}`, { dispatcher: agent });
          const body = Buffer.from(await res.body.arrayBuffer());
          if (res.statusCode !== 200) r.notFound.push({ asset, status: res.statusCode, page: rel.id });
          else if (sha(body) !== fileSha(rel.manifest, `public${asset}`)) r.wrongBody.push({ asset, page: rel.id });
        }
      }
    }
  });
  await Promise.all(clients);
  await agent.close();
  return r;
}

/** The real proxy control, with the drain of `holdAt` held until `release()` is called. */
function holdingControl(real: ProxyControl, holdAt: string): { control: ProxyControl; reached: Promise<void>; release: () => void } {
  let release!: () => void;
  let reachedResolve!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  const reached = new Promise<void>((res) => (reachedResolve = res));
  return {
    control: {
      async drain(name, timeoutMs) {
        if (name === holdAt) {
          reachedResolve();
          await gate;
        }
        return real.drain(name, timeoutMs);
      },
      enable: (name, timeoutMs) => real.enable(name, timeoutMs),
      ensureKnown: (name) => real.ensureKnown(name),
    },
    reached,
    release,
  };
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.141', { deploy: { canary: true, batch_size: 1, drain_timeout_ms: 5000, activation_timeout_ms: 15000, keep_releases: 3 } });
  await buildReleases();
  const first = await deploy(fleet.inventory, { release: relA.id, proxy: await proxyControlFor(fleet.inventory, progress), progress });
  expect(first.ok, log.join('\n')).toBe(true);
});
afterAll(async () => {
  await fleet?.stop();
});

describe('hashed assets while the fleet runs two releases', () => {
  it('a deploy held after its canary: every asset of every cookie-less page load is 200 with the body of the page own release', async () => {
    const real = (await proxyControlFor(fleet.inventory, progress))!;
    const second = fleet.inventory.instances[1]!.name;
    const hold = holdingControl(real, second);
    const running = deploy(fleet.inventory, { release: relB.id, proxy: hold.control, progress });
    let result: PageLoadResult;
    try {
      await hold.reached;
      // The canary serves B, the two others A: the fleet is mixed while the pages load.
      const versions = await Promise.all(fleet.inventory.instances.map((i) => versionOf(i.url)));
      expect(versions.map((v) => v.release)).toEqual([relB.id, relA.id, relA.id]);
      result = await loadPages(fleet.proxy!.url, 60, 3);
    } finally {
      hold.release();
    }
    const r = await running;
    console.log(
      `held after the canary: ${result.pages} cookie-less page loads (${[...result.pagesByRelease].map(([k, v]) => `${k}: ${v}`).join(', ')}), ` +
        `${result.assetRequests} asset requests, ${result.notFound.length} not 200, ${result.wrongBody.length} wrong bodies`,
    );
    expect(r.ok, log.join('\n')).toBe(true);
    expect(result.unknownPages).toBe(0);
    // Both releases' pages were seen, so assets crossed releases both ways.
    expect(result.pagesByRelease.get(relA.id)).toBeGreaterThan(0);
    expect(result.pagesByRelease.get(relB.id)).toBeGreaterThan(0);
    expect(result.assetRequests).toBeGreaterThanOrEqual(60 * 3 * 3);
    expect(result.notFound).toEqual([]);
    expect(result.wrongBody).toEqual([]);
  });

  it("an old page's lazy chunk still loads through the proxy after the deploy finished, with the old release's body", async () => {
    const versions = await Promise.all(fleet.inventory.instances.map((i) => versionOf(i.url)));
    expect(versions.map((v) => v.release)).toEqual([relB.id, relB.id, relB.id]);
    const expected = fileSha(relA.manifest, `public${relA.lazy}`);
    expect(expected).toBeDefined();
    // B does not have A's chunk: only the asset store can answer for it.
    expect(fileSha(relB.manifest, `public${relA.lazy}`)).toBeUndefined();
    const statuses: number[] = [];
    for (let n = 0; n < 3 * fleet.inventory.instances.length; n++) {
      const res = await request(`${fleet.proxy!.url}${relA.lazy}`);
      const body = Buffer.from(await res.body.arrayBuffer());
      statuses.push(res.statusCode);
      if (res.statusCode === 200) expect(sha(body)).toBe(expected);
    }
    expect(statuses.every((s) => s === 200), `statuses ${statuses.join(',')}`).toBe(true);
    // And directly on every instance (the proxy may favour some).
    for (const i of fleet.inventory.instances) {
      const res = await request(`${i.url}${relA.lazy}`);
      expect(sha(Buffer.from(await res.body.arrayBuffer()))).toBe(expected);
      expect(res.statusCode).toBe(200);
    }
  });

  it('drift names an asset of the rollback target missing and one of the expected release changed in a store; --repair restores both', async () => {
    const [h1, h2, h3] = fleet.ssh.hosts;
    const lazyName = relA.lazy.slice('/assets/'.length);
    const extraName = relB.manifest.files.find((f) => /^public\/assets\/extra-/.test(f.path))!.path.slice('public/assets/'.length);
    const { rmSync } = await import('node:fs');
    rmSync(join(h2!.deployTo, 'assets', lazyName));
    writeFileSync(join(h3!.deployTo, 'assets', extraName), 'tampered\n');
    const scan = await scanDrift(fleet.inventory);
    const text = renderDriftText(scan.report);
    const assetItems = (name: string) => scan.report.instances.find((i) => i.instance === name)!.items.filter((i) => i.kind === 'asset-store');
    expect(scan.report.rollbackTarget, text).toBe(relA.id);
    expect(assetItems(h1!.name), text).toEqual([]);
    expect(assetItems(h2!.name).map((i) => i.detail), text).toEqual([{ release: relA.id, store: join(h2!.deployTo, 'assets'), missing: [lazyName], changed: [] }]);
    expect(assetItems(h3!.name).map((i) => i.detail), text).toEqual([
      { release: relB.id, store: join(h3!.deployTo, 'assets'), missing: [], changed: [{ path: extraName, expected: fileSha(relB.manifest, `public/assets/${extraName}`), actual: sha('tampered\n') }] },
    ]);
    expect(text).toContain(`asset-store: asset store ${join(h3!.deployTo, 'assets')} does not serve release ${relB.id} as built: wrong content ${extraName}`);
    expect(scan.report.exitCode).toBe(1);

    const repaired = await repairDrift(fleet.inventory, scan, { proxy: await proxyControlFor(fleet.inventory, progress), progress, verify: false });
    expect(repaired.instances.find((i) => i.instance === h3!.name)?.actions.join('; ')).toContain('with a wrong body replaced');
    expect(repaired.after?.instances.flatMap((i) => i.items.filter((x) => x.kind === 'asset-store'))).toEqual([]);
    expect(sha(readFileSync(join(h3!.deployTo, 'assets', extraName)))).toBe(fileSha(relB.manifest, `public/assets/${extraName}`));
    expect(sha(readFileSync(join(h2!.deployTo, 'assets', lazyName)))).toBe(fileSha(relA.manifest, `public${relA.lazy}`));
  });

  it('a release that gives a hashed name already in the store another body fails before any activation, naming the file', async () => {
    const dir = join(buildBase, 'conflicting');
    cpSync(join(buildBase, 'release-b'), dir, { recursive: true });
    const extra = relB.manifest.files.find((f) => /^public\/assets\/extra-/.test(f.path))!.path;
    writeFileSync(join(dir, extra), 'export const variant = "same name, other body";\n');
    const c = await packageRelease(dir, artifactsDir(fleet.inventory), { revision: null, dirty: false, time: '2026-11-30T10:03:00Z', pinned: true });
    const r = await deploy(fleet.inventory, { release: c.release, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    expect(r.ok).toBe(false);
    expect(r.phase).toBe('prepare');
    expect(r.failure).toContain(`already holds ${extra}`);
    expect(r.failure).toContain('content-addressed');
    const versions = await Promise.all(fleet.inventory.instances.map((i) => versionOf(i.url)));
    expect(versions.map((v) => v.release)).toEqual([relB.id, relB.id, relB.id]);
    for (const h of fleet.ssh.hosts) expect(sha(readFileSync(join(h.deployTo, 'assets', extra.slice('public/assets/'.length))))).toBe(fileSha(relB.manifest, extra));
  });
});
