import { afterEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../proxy/index.ts';
import { request, servedBy, startTestProxy, startUpstream, waitFor, type TestUpstream, closeAll, forEachEngine } from './helpers.ts';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

forEachEngine(() => {

  describe('balancing and active health checks', () => {
    it('round robin spreads requests evenly over healthy instances', async () => {
      upstreams = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)));
      proxy = await startTestProxy(upstreams);
      const seen: string[] = [];
      for (let i = 0; i < 30; i++) seen.push(servedBy(await request(`${proxy.url}/x`)));
      expect(upstreams.map((u) => u.hits)).toEqual([10, 10, 10]);
      // Strict rotation: no instance twice in a row.
      for (let i = 1; i < seen.length; i++) expect(seen[i]).not.toBe(seen[i - 1]);
    });

    it('an unhealthy instance gets no traffic and comes back by itself after it recovers', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
      const [a, b] = upstreams as [TestUpstream, TestUpstream];
      proxy = await startTestProxy(upstreams);
      const p = proxy;
      b.healthy = false;
      await waitFor('b marked unhealthy', () => p.instances().find((i) => i.name === 'b')?.healthy === false);
      const before = b.hits;
      for (let i = 0; i < 20; i++) expect((await request(`${p.url}/x`)).status).toBe(200);
      expect(b.hits).toBe(before);
      expect(a.hits).toBeGreaterThanOrEqual(20);

      b.healthy = true;
      await waitFor('b healthy again', () => p.instances().find((i) => i.name === 'b')?.healthy === true);
      for (let i = 0; i < 10; i++) await request(`${p.url}/x`);
      expect(b.hits).toBeGreaterThan(before);
    });

    it('an instance that is down at start gets traffic once it comes up', async () => {
      const a = await startUpstream('a');
      const b = await startUpstream('b');
      upstreams = [a, b];
      b.healthy = false;
      proxy = await startTestProxy(upstreams);
      expect(proxy.instances().map((i) => i.healthy)).toEqual([true, false]);
      b.healthy = true;
      const p = proxy;
      await waitFor('b healthy', () => p.instances()[1]!.healthy);
      for (let i = 0; i < 4; i++) await request(`${p.url}/x`);
      expect(b.hits).toBeGreaterThan(0);
    });

    it('reload adds and removes instances without dropping requests in flight', async () => {
      upstreams = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)));
      const [a, b, c] = upstreams as [TestUpstream, TestUpstream, TestUpstream];
      // One request in flight on each of a (to be removed) and b (kept) while the reload happens.
      const held: Array<import('node:http').ServerResponse> = [];
      for (const u of [a, b]) {
        const name = u.name;
        u.handler = (req, res) => {
          if (req.url === '/hold') held.push(res);
          else res.end(JSON.stringify({ instance: name }));
        };
      }
      proxy = await startTestProxy([a, b]);
      const p = proxy;
      const slow = [request(`${p.url}/hold`), request(`${p.url}/hold`)];
      await waitFor('one request held on each', () => held.length === 2);
      const changes = await p.reload([
        { name: 'b', url: b.url },
        { name: 'c', url: c.url },
      ]);
      expect(changes).toEqual({ added: ['c'], removed: ['a'] });
      // Nothing was dropped: both finish normally.
      for (const res of held) res.end('done');
      expect((await Promise.all(slow)).map((r) => [r.status, r.body])).toEqual([
        [200, 'done'],
        [200, 'done'],
      ]);
      await waitFor('c healthy', () => p.instances().find((i) => i.name === 'c')?.healthy === true);
      const aHits = a.hits;
      const bHits = b.hits;
      for (let i = 0; i < 10; i++) await request(`${p.url}/x`);
      expect(a.hits).toBe(aHits);
      expect(b.hits - bHits + c.hits).toBe(10);
      expect(c.hits).toBeGreaterThan(0);
    });
  });
});
