// Rolling deploys, automatic rollback and one-command rollback on three real sshd hosts running
// the real app behind the real proxy, under continuous bounded load: no user request may fail.
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRelease } from '../../deployer/build/build.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { artifactsDir } from '../../deployer/build/release-source.ts';
import { rollback } from '../../deployer/rollout/rollback.ts';
import { openFleet } from '../../deployer/fleet/fleet.ts';
import { currentOnDisk, repoRoot, startE2eFleet, type E2eFleet } from './support.ts';
import { startLoad, type LoadResult } from './load.ts';

let fleet: E2eFleet;
let good1: string;
let good2: string;
let bad: string;
const log: string[] = [];
const progress = (i: string, l: string) => void log.push(`[${i}] ${l}`);

/** Build the real app once; derive a second good release and one whose server never gets healthy. */
async function buildReleases(): Promise<void> {
  const base = mkdtempSync(join(tmpdir(), 'lockstep-rel-'));
  const a = join(base, 'a');
  execFileSync(process.execPath, [join(repoRoot, 'app/build.mjs'), '--out', a]);
  const b = join(base, 'b');
  cpSync(a, b, { recursive: true });
  writeFileSync(join(b, 'public', 'release-note.txt'), 'second release\n');
  const c = join(base, 'c');
  cpSync(a, c, { recursive: true });
  // Starts, listens, but its health check always fails: a release that must never take traffic.
  writeFileSync(
    join(c, 'server', 'index.mjs'),
    "import http from 'node:http';\nhttp.createServer((q, r) => { r.statusCode = 500; r.end('broken release'); }).listen(Number(process.env.PORT), process.env.HOST);\n",
  );
  const out = artifactsDir(fleet.inventory);
  const src = (minute: string) => ({ revision: null, dirty: false, time: `2026-11-30T08:${minute}:00Z`, pinned: true });
  good1 = (await packageRelease(a, out, src('01'))).release;
  good2 = (await packageRelease(b, out, src('02'))).release;
  bad = (await packageRelease(c, out, src('03'))).release;
}

function expectNoFailedRequests(r: LoadResult, allowed: string[]): void {
  expect(r.failures).toEqual([]);
  expect(r.requests).toBeGreaterThanOrEqual(2000);
  expect(r.lostSessions).toBe(0);
  // Cookie-less page loads fetched every asset of each page: none missing on any instance.
  expect(r.pageLoads).toBeGreaterThan(0);
  expect(r.assetRequests).toBeGreaterThan(r.pageLoads);
  expect(r.asset404s).toBe(0);
  for (const release of r.releases.keys()) expect(allowed).toContain(release);
}

function onDisk(): (string | null)[] {
  return fleet.ssh.hosts.map((h) => currentOnDisk(h.deployTo));
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.41', { deploy: { drain_timeout_ms: 5000, activation_timeout_ms: 8000, keep_releases: 3 } });
  await buildReleases();
  const first = await deploy(fleet.inventory, { release: good1, proxy: await proxyControlFor(fleet.inventory, progress), progress });
  expect(first.ok).toBe(true);
});
afterAll(async () => {
  await fleet?.stop();
});

describe('rollout under load through the proxy', () => {
  it('a rolling deploy of three instances fails no request; every answer is from the old or the new release', async () => {
    const load = startLoad(fleet.proxy!.url);
    const r = await deploy(fleet.inventory, { release: good2, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    const result = await load.stop();
    expect(r.ok).toBe(true);
    expect(onDisk()).toEqual([`releases/${good2}`, `releases/${good2}`, `releases/${good2}`]);
    expectNoFailedRequests(result, [good1, good2]);
    expect(result.releases.get(good2)).toBeGreaterThan(0);
  });

  it('a release that fails its health check on the canary is rolled back there; no other instance is touched; no request fails', async () => {
    const load = startLoad(fleet.proxy!.url);
    const r = await deploy(fleet.inventory, { release: bad, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    const result = await load.stop();
    expect(r.ok).toBe(false);
    expect(r.phase).toBe('rollout');
    expect(r.failure).toMatch(/ssh-1: health check .* did not pass/);
    expect(r.instances.map((i) => i.state)).toEqual(['rolled-back', 'untouched', 'untouched']);
    expect(r.state).toBe(`rolled back: the whole fleet serves ${good2}`);
    expect(onDisk()).toEqual([`releases/${good2}`, `releases/${good2}`, `releases/${good2}`]);
    expectNoFailedRequests(result, [good2]);
  });

  it('rollback goes to the last good release (not the failed one), under load, with no failed request', async () => {
    const load = startLoad(fleet.proxy!.url);
    const r = await rollback(fleet.inventory, { proxy: await proxyControlFor(fleet.inventory, progress), progress });
    const result = await load.stop();
    expect(r.ok).toBe(true);
    expect(r.release).toBe(good1);
    expect(onDisk()).toEqual([`releases/${good1}`, `releases/${good1}`, `releases/${good1}`]);
    expectNoFailedRequests(result, [good1, good2]);
  });

  it('control: the same load does see failures when every instance goes down at once', async () => {
    const load = startLoad(fleet.proxy!.url);
    const ops = openFleet(fleet.inventory);
    try {
      // Wait until the load runs, take the whole fleet down, then bring it back.
      await new Promise((r) => setTimeout(r, 500));
      await ops.each((o) => o.stopApp());
      await new Promise((r) => setTimeout(r, 1500));
      await ops.each(async (o) => {
        await o.activate(good1);
        await o.waitForGates((await o.readCurrentManifest()).digest, 8000);
      });
    } finally {
      await ops.close();
    }
    const result = await load.stop();
    expect(result.failures.length).toBeGreaterThan(0);
  });
});
