import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { signAffinity } from '../../proxy/affinity.ts';
import type { RunningProxy } from '../../proxy/index.ts';
import { AFFINITY_SECRET, admin, request, servedBy, startTestProxy, startUpstream, waitFor, type TestUpstream, closeAll } from './helpers.ts';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

const pin = (name: string): string => `lockstep_affinity=${signAffinity(AFFINITY_SECRET, name).value}`;
const startCluster = (ups: TestUpstream[], overrides = {}): Promise<RunningProxy> => startTestProxy(ups, { ...overrides }, { workers: 2 });

describe('worker mode: two processes, one consistent state', () => {
  it('balances, pins and reports the same instances from every worker', async () => {
    upstreams = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)));
    proxy = await startCluster(upstreams);
    for (let i = 0; i < 30; i++) expect((await request(`${proxy.url}/x`)).status).toBe(200);
    for (const u of upstreams) expect(u.hits).toBeGreaterThan(0);
    // Each request on a fresh connection, so both workers serve some: the pin holds in all of them.
    for (let i = 0; i < 12; i++) expect(servedBy(await request(`${proxy.url}/x`, { headers: { cookie: pin('b') } }))).toBe('b');
    const listed = JSON.parse((await admin(proxy, 'GET', '/admin/instances')).body) as { instances: Array<{ name: string; healthy: boolean }> };
    expect(listed.instances.map((i) => [i.name, i.healthy])).toEqual([
      ['a', true],
      ['b', true],
      ['c', true],
    ]);
    const metrics = (await admin(proxy, 'GET', '/metrics')).body;
    const total = [...metrics.matchAll(/^lockstep_proxy_requests_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(total).toBe(42);
    expect(metrics).toContain('lockstep_proxy_instance_healthy{instance="a"} 1');
  });

  it('drain waits for in-flight requests in every worker, and no worker sends new work there', async () => {
    upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
    const [a] = upstreams as [TestUpstream, TestUpstream];
    const held: http.ServerResponse[] = [];
    a.handler = (req, res) => {
      if (req.url === '/hold') held.push(res);
      else res.end(JSON.stringify({ instance: 'a' }));
    };
    proxy = await startCluster(upstreams);
    const p = proxy;
    const slow = [request(`${p.url}/hold`, { headers: { cookie: pin('a') } }), request(`${p.url}/hold`, { headers: { cookie: pin('a') } })];
    await waitFor('both held on a', () => held.length === 2);
    const listed = JSON.parse((await admin(p, 'GET', '/admin/instances')).body) as { instances: Array<{ name: string; inflight: number }> };
    expect(listed.instances[0]).toMatchObject({ name: 'a', inflight: 2 });

    const early = JSON.parse((await admin(p, 'POST', '/admin/instances/a/drain?wait=1&timeout_ms=50')).body);
    expect(early).toMatchObject({ drained: false, inflight: 2 });
    const drain = admin(p, 'POST', '/admin/instances/a/drain?wait=1&timeout_ms=60000');
    for (let i = 0; i < 10; i++) expect(servedBy(await request(`${p.url}/x`))).toBe('b');
    for (const r of held) r.end('{"instance":"a"}');
    await Promise.all(slow);
    expect(JSON.parse((await drain).body)).toEqual({ name: 'a', state: 'draining', drained: true, inflight: 0 });
  });

  it('health and passive ejection decided once apply in every worker', async () => {
    upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
    const [a, b] = upstreams as [TestUpstream, TestUpstream];
    b.handler = (_req, res) => {
      res.statusCode = 500;
      res.end('{}');
    };
    proxy = await startCluster(upstreams, { passiveEjection: { consecutiveFailures: 2, baseEjectMs: 60_000 } });
    const p = proxy;
    for (let i = 0; i < 12; i++) await request(`${p.url}/x`);
    await waitFor('b ejected', () => p.instances().find((i) => i.name === 'b')!.ejected);
    const bHits = b.hits;
    for (let i = 0; i < 10; i++) expect(servedBy(await request(`${p.url}/x`))).toBe('a');
    expect(b.hits).toBe(bHits);

    // Active health: a goes down, every worker stops using it (b is ejected, so: 503).
    a.healthy = false;
    await waitFor('a unhealthy', () => !p.instances().find((i) => i.name === 'a')!.healthy);
    const aHits = a.hits;
    for (let i = 0; i < 6; i++) expect((await request(`${p.url}/x`)).status).toBe(503);
    expect(a.hits).toBe(aHits);
  });

  it('a request held by a worker for a draining instance completes once the primary enables it', async () => {
    upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
    proxy = await startCluster(upstreams, { hold: { timeoutMs: 60_000 } });
    const p = proxy;
    await admin(p, 'POST', '/admin/instances/a/drain');
    const held = request(`${p.url}/x`, { headers: { cookie: pin('a') } });
    await waitFor('held in a worker', async () => {
      const listed = JSON.parse((await admin(p, 'GET', '/admin/instances')).body) as { instances: Array<{ name: string; held: number }> };
      return listed.instances[0]!.held === 1;
    });
    expect(upstreams[0]!.hits).toBe(0);
    await admin(p, 'POST', '/admin/instances/a/enable');
    const r = await held;
    expect(servedBy(r)).toBe('a');
    expect(r.headers['x-lockstep-repinned']).toBeUndefined();
  });

  it('replaces a worker that dies, and keeps serving meanwhile', async () => {
    upstreams = [await startUpstream('a')];
    proxy = await startCluster(upstreams);
    const p = proxy;
    const before = p.workerPids!();
    expect(before).toHaveLength(2);
    process.kill(before[0]!, 'SIGKILL');
    await waitFor('a new worker', () => {
      const now = p.workerPids!();
      return now.length === 2 && !now.includes(before[0]!);
    }, 400);
    for (let i = 0; i < 10; i++) expect((await request(`${p.url}/x`)).status).toBe(200);
  });
});
