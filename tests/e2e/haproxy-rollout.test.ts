// proxy.engine: haproxy. The deployer drives a real HAProxy (supervised by Lockstep, reached only
// through Lockstep's admin API) in front of three real sshd hosts running the real app, under
// continuous bounded load through HAProxy: a deploy, a failed canary rolled back automatically and
// a rollback fail no request; a disabled and a draining server stay so across a HAProxy reload.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyClientFromInventory } from '../../deployer/balancer/admin-client.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { rollback } from '../../deployer/rollout/rollback.ts';
import { currentOnDisk, makeReleases, startE2eFleet, type E2eFleet } from './support.ts';
import { startLoad, type LoadResult } from './load.ts';

let fleet: E2eFleet;
let good1: string;
let good2: string;
let bad: string;
const log: string[] = [];
const progress = (i: string, l: string) => void log.push(`[${i}] ${l}`);
/** Enough requests to span an instance restart; bounded in time too (load.ts). */
const LOAD = { minRequests: 800, maxMs: 120_000 };

function expectNoFailedRequests(r: LoadResult, allowed: string[]): void {
  expect(r.failures).toEqual([]);
  expect(r.requests).toBeGreaterThanOrEqual(LOAD.minRequests);
  expect(r.lostSessions).toBe(0);
  expect(r.pageLoads).toBeGreaterThan(0);
  expect(r.asset404s).toBe(0);
  for (const release of r.releases.keys()) expect(allowed).toContain(release);
}

const onDisk = () => fleet.ssh.hosts.map((h) => currentOnDisk(h.deployTo));

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.10.11', {
    engine: 'haproxy',
    proxyAddress: '127.0.10.10',
    // A held request waits for its restarting instance; on a loaded 2-core machine a failed canary
    // plus its rollback can take longer than the default 15 s (the load's own timeout is 30 s).
    proxySection: { hold_timeout_ms: 25_000 },
    deploy: { drain_timeout_ms: 5000, activation_timeout_ms: 8000, keep_releases: 3 },
  });
  [good1, good2, bad] = (await makeReleases(fleet.inventory, ['good', 'good', 'broken'])) as [string, string, string];
  const first = await deploy(fleet.inventory, { release: good1, proxy: await proxyControlFor(fleet.inventory, progress), progress });
  expect(first.ok, log.join('\n')).toBe(true);
});
afterAll(async () => {
  await fleet?.stop();
});

describe('rollout under load through Lockstep-managed HAProxy', () => {
  it('the admin API reports HAProxy\'s servers: every instance enabled and healthy', async () => {
    const list = await proxyClientFromInventory(fleet.inventory).listInstances();
    expect(list.map((i) => [i.name, i.state, i.healthy])).toEqual(fleet.inventory.instances.map((i) => [i.name, 'enabled', true]));
  });

  it('a rolling deploy fails no request', async () => {
    const load = startLoad(fleet.proxyUrl!, LOAD);
    const r = await deploy(fleet.inventory, { release: good2, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    const result = await load.stop();
    expect(r.ok, log.join('\n')).toBe(true);
    expect(onDisk()).toEqual([`releases/${good2}`, `releases/${good2}`, `releases/${good2}`]);
    expectNoFailedRequests(result, [good1, good2]);
    expect(result.releases.get(good2)).toBeGreaterThan(0);
  });

  it('a release failing its health check on the first instance is rolled back there automatically; no request fails', async () => {
    const load = startLoad(fleet.proxyUrl!, LOAD);
    const r = await deploy(fleet.inventory, { release: bad, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    const result = await load.stop();
    expect(r.ok).toBe(false);
    expect(r.instances.map((i) => i.state)).toEqual(['rolled-back', 'untouched', 'untouched']);
    expect(onDisk()).toEqual([`releases/${good2}`, `releases/${good2}`, `releases/${good2}`]);
    expectNoFailedRequests(result, [good2]);
  });

  it('rollback to the last good release fails no request', async () => {
    const load = startLoad(fleet.proxyUrl!, LOAD);
    const r = await rollback(fleet.inventory, { proxy: await proxyControlFor(fleet.inventory, progress), progress });
    const result = await load.stop();
    expect(r.ok, log.join('\n')).toBe(true);
    expect(r.release).toBe(good1);
    expect(onDisk()).toEqual([`releases/${good1}`, `releases/${good1}`, `releases/${good1}`]);
    expectNoFailedRequests(result, [good1, good2]);
  });

  it('a disabled and a draining server stay so across a HAProxy reload', async () => {
    const admin = proxyClientFromInventory(fleet.inventory);
    const [a, b] = fleet.inventory.instances.map((i) => i.name);
    await admin.disable(a!);
    await admin.drain(b!);
    const pidBefore = await haproxyWorkerPid();
    expect(await admin.reload()).toMatchObject({ added: [], removed: [] });
    expect(await haproxyWorkerPid()).not.toBe(pidBefore);
    expect((await admin.listInstances()).map((i) => i.state)).toEqual(['disabled', 'draining', 'enabled']);
    await admin.enable(a!);
    await admin.enable(b!);
  });
});

/** The HAProxy worker's pid, from its Runtime API (changes on every reload). */
async function haproxyWorkerPid(): Promise<string> {
  const { runtimeCommand } = await import('../../proxy/haproxy/runtime.ts');
  const { join } = await import('node:path');
  const info = await runtimeCommand(join(fleet.ssh.dir, 'haproxy', 'haproxy.sock'), 'show info');
  return /^Pid: (\d+)$/m.exec(info)![1]!;
}
