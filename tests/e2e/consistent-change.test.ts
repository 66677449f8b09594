// Issue 12, items 2, 3 and 5 on three real sshd hosts running the real app behind the real proxy:
// decisions are taken on the state read under the lock; an automatic rollback after a failure
// on the LAST batch goes back batch by batch under cookie-less load without a failed request and
// without ever leaving fewer than N - batch_size instances serving; the proxy is required when the
// inventory has one, and an instance it does not know yet is added before its activation.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { pageAssets } from './load.ts';
import { packageRelease } from '../../deployer/build/build.ts';
import { artifactsDir } from '../../deployer/build/release-source.ts';
import { deploy, type DeployReport } from '../../deployer/rollout/deploy.ts';
import { rollback } from '../../deployer/rollout/rollback.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { proxyClientFromInventory } from '../../deployer/balancer/admin-client.ts';
import { scanDrift } from '../../deployer/drift/scan.ts';
import { repairDrift } from '../../deployer/drift/repair.ts';
import { loadInventory, type Inventory } from '../../config/inventory.ts';
import { startProxy } from '../../proxy/index.ts';
import { proxyConfigFromInventory, upstreamsFromInventory } from '../../proxy/inventory-config.ts';
import { addHashedModule, currentOnDisk, makeReleases, repoRoot, startE2eFleet, type E2eFleet } from './support.ts';

let fleet: E2eFleet;
let g1: string, g2: string, g3: string, g4: string, g5: string, bad: string, lastFails: string;
const log: string[] = [];
const progress = (i: string, l: string) => void log.push(`[${i}] ${l}`);

function onDisk(): (string | null)[] {
  return fleet.ssh.hosts.map((h) => currentOnDisk(h.deployTo));
}
const all = (r: string) => [`releases/${r}`, `releases/${r}`, `releases/${r}`];

function cli(args: string[]) {
  return spawnSync(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', fleet.inventory.file], { encoding: 'utf8', timeout: 120_000 });
}

/** A release that starts healthy everywhere except on ssh-3, where it serves 500 on every path. */
async function releaseFailingOn(instance: string): Promise<string> {
  const base = mkdtempSync(join(tmpdir(), 'lockstep-rel-'));
  const dir = join(base, 'app');
  execFileSync(process.execPath, [join(repoRoot, 'app/build.mjs'), '--out', dir]);
  addHashedModule(dir, `failing on ${instance}`);
  renameSync(join(dir, 'server', 'index.mjs'), join(dir, 'server', 'real-index.mjs'));
  writeFileSync(
    join(dir, 'server', 'index.mjs'),
    `import http from 'node:http';\nif (process.env.LOCKSTEP_INSTANCE === ${JSON.stringify(instance)}) {\n  http.createServer((q, r) => { r.statusCode = 500; r.end('broken here'); }).listen(Number(process.env.PORT), process.env.HOST);\n} else {\n  await import('./real-index.mjs');\n}\n`,
  );
  return (await packageRelease(dir, artifactsDir(fleet.inventory), { revision: null, dirty: false, time: '2026-11-30T09:50:00Z', pinned: true })).release;
}

/**
 * Cookie-less clients through the proxy (a CDN, a health probe): each loop loads the page, every
 * asset it names, and /version. Bounded: stops when asked (after at least `minRequests`) or after `maxMs`.
 */
function startCookielessLoad(url: string, clients = 8, minRequests = 400, maxMs = 120_000) {
  const agent = new Agent({ connections: clients * 2, keepAliveTimeout: 4000 });
  const result = { requests: 0, assetRequests: 0, failures: [] as string[] };
  const deadline = Date.now() + maxMs;
  let stopping = false;
  const done = () => Date.now() > deadline || result.requests >= 200_000 || (stopping && result.requests >= minRequests);
  async function client(): Promise<void> {
    while (!done()) {
      // A page, then every asset it names (as a browser without cookies would), then /version.
      const paths = ['/'];
      for (let i = 0; i < paths.length; i++) {
        const path = paths[i]!;
        result.requests++;
        try {
          const res = await request(`${url}${path}`, { dispatcher: agent, headersTimeout: 30_000, bodyTimeout: 30_000 });
          const text = await res.body.text();
          if (res.statusCode >= 400) result.failures.push(`${path}: ${res.statusCode}`);
          if (path === '/' && res.statusCode === 200) paths.push(...pageAssets(text), '/version');
          if (path.startsWith('/assets/')) result.assetRequests++;
        } catch (e) {
          result.failures.push(`${path}: ${(e as Error).message}`);
        }
      }
    }
  }
  const running = Promise.all(Array.from({ length: clients }, () => client()));
  return {
    async stop() {
      stopping = true;
      await running;
      await agent.close();
      return result;
    },
  };
}

/**
 * Sample the proxy admin API (GET /admin/instances) every 50 ms: the fewest instances that were
 * enabled and healthy at once. Bounded by `maxMs`.
 */
function sampleServing(inventory: Inventory, maxMs = 180_000) {
  const admin = proxyClientFromInventory(inventory);
  let min = Number.POSITIVE_INFINITY;
  let samples = 0;
  let stopping = false;
  const deadline = Date.now() + maxMs;
  const running = (async () => {
    while (!stopping && Date.now() < deadline) {
      const list = await admin.listInstances().catch(() => null);
      if (list) {
        samples++;
        min = Math.min(min, list.filter((i) => i.state === 'enabled' && i.healthy).length);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      stopping = true;
      await running;
      return { min, samples };
    },
  };
}

/** An inventory whose before_activate hook holds the deploy (and its lock) until `gate` exists. */
function gatedInventory(gate: string): Inventory {
  const inv = fleet.inventory;
  const hook = `i=0; while [ ! -e ${gate} ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; [ -e ${gate} ]`;
  return { ...inv, deploy: { ...inv.deploy, hooks: { ...inv.deploy.hooks, before_activate: hook } } };
}

async function until(what: () => boolean, label: string, maxMs = 60_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (!what()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${label}\n${log.slice(-30).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.101', { deploy: { batch_size: 1, canary: true, drain_timeout_ms: 5000, activation_timeout_ms: 20000, keep_releases: 10 } });
  [g1, g2, g3, g4, g5, bad] = (await makeReleases(fleet.inventory, ['good', 'good', 'good', 'good', 'good', 'broken'])) as [string, string, string, string, string, string];
  lastFails = await releaseFailingOn('ssh-3');
  const first = await deploy(fleet.inventory, { release: g1, proxy: await proxyControlFor(fleet.inventory, progress), progress });
  expect(first.ok, first.failure).toBe(true);
}, 240_000);
afterAll(async () => {
  await fleet?.stop();
});

describe('automatic rollback after a failure on the last batch (item 3)', () => {
  it('goes back batch by batch, last first: 0 failed cookie-less requests, never fewer than N - batch_size serving', async () => {
    const sampler = sampleServing(fleet.inventory);
    const load = startCookielessLoad(fleet.proxy!.url);
    const r = await deploy(fleet.inventory, { release: lastFails, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    const loaded = await load.stop();
    const serving = await sampler.stop();
    expect(r.ok).toBe(false);
    expect(r.failure).toContain('ssh-3');
    expect(r.state).toBe(`rolled back: the whole fleet serves ${g1}`);
    expect(onDisk()).toEqual(all(g1));
    expect(r.instances.map((i) => i.state)).toEqual(['rolled-back', 'rolled-back', 'rolled-back']);
    // Reverse batch order: ssh-3 (the failed batch) first, then ssh-2, then the canary ssh-1.
    const order = log.filter((l) => l.includes(`rolling back to ${g1}`)).map((l) => l.slice(1, 6));
    expect(order).toEqual(['ssh-3', 'ssh-2', 'ssh-1']);
    expect(loaded.failures).toEqual([]);
    expect(loaded.requests).toBeGreaterThanOrEqual(400);
    expect(loaded.assetRequests).toBeGreaterThan(0);
    expect(serving.samples).toBeGreaterThan(10);
    expect(serving.min).toBeGreaterThanOrEqual(3 - 1);
    console.log(`item 3: ${loaded.requests} cookie-less requests, ${loaded.failures.length} failed; ${serving.samples} proxy samples, fewest serving ${serving.min} of 3`);
  }, 240_000);
});

describe('take the lock, then read (item 2)', () => {
  it('deploy --wait: a failed canary goes back to the release another deploy activated while this one waited; the state printed is true', async () => {
    expect(onDisk()).toEqual(all(g1));
    const gate = join(fleet.ssh.dir, 'gate-a');
    const a = deploy(gatedInventory(gate), { release: g2, progress: (i, l) => progress(`A ${i}`, l) });
    await until(() => log.some((l) => l.startsWith('[A ssh-1] running before_activate hook')), 'deploy A holds the lock');
    const bLog: string[] = [];
    const b = deploy(fleet.inventory, { release: bad, lockWaitMs: 120_000, proxy: await proxyControlFor(fleet.inventory, progress), progress: (i, l) => void bLog.push(`[${i}] ${l}`) });
    await until(() => bLog.some((l) => l.includes('waiting up to')), 'deploy B waits for the lock');
    // B read the fleet at preflight (g1). Now A finishes g2 and releases the lock.
    writeFileSync(gate, 'go\n');
    const ra = await a;
    expect(ra.ok, ra.failure).toBe(true);
    const rb: DeployReport = await b;
    expect(rb.ok).toBe(false);
    expect(rb.instances.map((i) => i.before)).toEqual([g2, g2, g2]);
    expect(rb.state).toBe(`rolled back: the whole fleet serves ${g2}`);
    expect(onDisk()).toEqual(all(g2));
    const d = (await scanDrift(fleet.inventory)).report;
    expect(d.expected.release).toBe(g2);
    expect(d.exitCode).toBe(0);
  }, 240_000);

  it('rollback --wait decides its target under the lock: the release before the one a concurrent deploy activated', async () => {
    expect(onDisk()).toEqual(all(g2));
    const gate = join(fleet.ssh.dir, 'gate-b');
    const a = deploy(gatedInventory(gate), { release: g3, progress: (i, l) => progress(`A2 ${i}`, l) });
    await until(() => log.some((l) => l.startsWith('[A2 ssh-1] running before_activate hook')), 'deploy A2 holds the lock');
    const rLog: string[] = [];
    const rb = rollback(fleet.inventory, { lockWaitMs: 120_000, proxy: await proxyControlFor(fleet.inventory, progress), progress: (i, l) => void rLog.push(`[${i}] ${l}`) });
    await until(() => rLog.some((l) => l.includes('waiting up to')), 'rollback waits for the lock');
    writeFileSync(gate, 'go\n');
    expect((await a).ok).toBe(true);
    const r = await rb;
    // Before the lock the fleet was on g2 (target g1); under the lock it is on g3: target g2.
    expect(r.ok, r.failure).toBe(true);
    expect(r.release).toBe(g2);
    expect(onDisk()).toEqual(all(g2));
  }, 240_000);

  it('drift --repair acts on a scan taken under the lock, not on the one taken before it', async () => {
    expect(onDisk()).toEqual(all(g2));
    // ssh-2's current switched by hand to g1 (not restarted): drift against g2.
    const link = join(fleet.ssh.hosts[1]!.deployTo, 'current');
    rmSync(link);
    symlinkSync(`releases/${g1}`, link);
    const stale = await scanDrift(fleet.inventory);
    expect(stale.report.expected.release).toBe(g2);
    expect(stale.report.instances.find((i) => i.instance === 'ssh-2')!.status).toBe('drift');
    // Meanwhile a deploy of g4 puts the whole fleet on g4 (ssh-2 included).
    const d = await deploy(fleet.inventory, { release: g4, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    expect(d.ok, d.failure).toBe(true);
    const r = await repairDrift(fleet.inventory, stale, { proxy: await proxyControlFor(fleet.inventory, progress), progress, verify: false });
    // The scan under the lock expects g4 and finds nothing to repair: the deploy is not undone.
    expect(r.before.expected.release).toBe(g4);
    expect(r.instances).toEqual([]);
    expect(onDisk()).toEqual(all(g4));
    expect(r.exitCode).toBe(0);
  }, 240_000);
});

describe('the proxy is required when the inventory has one (item 5)', () => {
  it('an instance the proxy does not know is added (reload) before its activation; never "draining in proxy" before that', async () => {
    // Restart the proxy with ssh-3 missing from its upstreams; its reload source has all three.
    await fleet.proxy!.close();
    const partial = { ...fleet.inventory, instances: fleet.inventory.instances.slice(0, 2) };
    fleet.proxy = await startProxy(proxyConfigFromInventory(partial), { reloadSource: () => upstreamsFromInventory(loadInventory(fleet.inventory.file)) });
    const admin = proxyClientFromInventory(fleet.inventory);
    expect((await admin.listInstances()).map((i) => i.name)).toEqual(['ssh-1', 'ssh-2']);
    const lines: string[] = [];
    const r = await deploy(fleet.inventory, { release: g5, proxy: await proxyControlFor(fleet.inventory, (i, l) => void lines.push(`[${i}] ${l}`)), progress: (i, l) => void lines.push(`[${i}] ${l}`) });
    expect(r.ok, r.failure).toBe(true);
    const ssh3 = await admin.listInstances();
    expect(ssh3.find((i) => i.name === 'ssh-3')).toMatchObject({ state: 'enabled', healthy: true });
    const reloadAt = lines.findIndex((l) => l.startsWith('[proxy] reloaded') && l.includes('ssh-3'));
    const drainAt = lines.findIndex((l) => l === '[ssh-3] draining in proxy');
    expect(reloadAt).toBeGreaterThanOrEqual(0);
    expect(drainAt).toBeGreaterThan(reloadAt);
    expect(lines).toContain('[ssh-3] enabled in proxy');
  }, 240_000);

  it('with the proxy down: deploy, deploy --dry-run and rollback fail in preflight naming the admin address (exit 3, nothing changed); --no-proxy overrides', async () => {
    expect(onDisk()).toEqual(all(g5));
    const historyBefore = fleet.ssh.hosts.map((h) => readFileSync(join(h.deployTo, '.lockstep/history.jsonl'), 'utf8'));
    await fleet.proxy!.close();
    fleet.proxy = undefined;
    const adminListen = String((fleet.inventory.proxy as { admin_listen: string }).admin_listen);
    for (const args of [['deploy', '--release', g4, '--dry-run'], ['deploy', '--release', g4, '--no-verify'], ['rollback']]) {
      const r = cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(3);
      expect(r.stderr).toContain(adminListen);
      expect(r.stderr).toContain('--no-proxy');
      expect(r.stdout).not.toContain('dry run');
    }
    expect(onDisk()).toEqual(all(g5));
    expect(fleet.ssh.hosts.map((h) => readFileSync(join(h.deployTo, '.lockstep/history.jsonl'), 'utf8'))).toEqual(historyBefore);
    for (const h of fleet.ssh.hosts) expect(existsSync(join(h.deployTo, '.lockstep/lock'))).toBe(false);
    const forced = cli(['deploy', '--release', g4, '--no-verify', '--no-proxy']);
    expect(forced.status, forced.stderr).toBe(0);
    expect(forced.stderr).toContain('WITHOUT the proxy');
    expect(onDisk()).toEqual(all(g4));
  }, 240_000);
});
