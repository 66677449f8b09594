/**
 * Sticky clients during a planned restart (issue 13): when the fleet's sessions are shared
 * (`hold.sessionsShared`, from `app.session_store: redis` in the inventory), a request pinned to
 * an instance drained for a deploy moves at once; without it, the hold stays. Real proxy, small
 * real upstreams, loopback range 127.0.11.x only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { signAffinity } from '../../proxy/affinity.ts';
import type { RunningProxy } from '../../proxy/index.ts';
import { AFFINITY_SECRET, admin, closeAll, forEachEngine, request, servedBy, startTestProxy, startUpstream, waitFor, type Reply, type TestUpstream } from './helpers.ts';

const HOST = '127.0.11.2';
const ON_OWN_RANGE = { listen: { host: HOST, port: 0 }, adminListen: { host: HOST, port: 0 } };

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

const pin = (name: string): string => `lockstep_affinity=${signAffinity(AFFINITY_SECRET, name).value}`;
const status = (p: RunningProxy, name: string) => p.instances().find((i) => i.name === name)!;

/** Which comes first: the reply, or the proxy holding the request for `a`. */
async function replyOrHeld(p: RunningProxy, reply: Promise<Reply>): Promise<Reply | 'held'> {
  let settled = false;
  const held = waitFor('request held for a', () => settled || status(p, 'a').held > 0, 2_000, 5).then(() => 'held' as const);
  const r = await Promise.race([reply.finally(() => (settled = true)), held]);
  settled = true;
  return r;
}

forEachEngine(() => {
  describe('a sticky client of an instance drained for a deploy', () => {
    it('with shared sessions: moves at once to another instance, and is told so', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n, 0, HOST)));
      // A hold this long would outlast the test: a held request can only fail it.
      proxy = await startTestProxy(upstreams, { ...ON_OWN_RANGE, hold: { timeoutMs: 600_000, sessionsShared: true } });
      const p = proxy;
      await admin(p, 'POST', '/admin/instances/a/drain');
      const r = await replyOrHeld(p, request(`${p.url}/api/session`, { method: 'POST', body: 'x'.repeat(1000), headers: { cookie: pin('a') } }));
      expect(r).not.toBe('held');
      const reply = r as Reply;
      expect(reply.status).toBe(200);
      expect(servedBy(reply)).toBe('b');
      expect(reply.headers['x-lockstep-repinned']).toBe('a -> b');
      expect(reply.headers['set-cookie']!.join()).toContain(pin('b'));
      expect(status(p, 'a').held).toBe(0);
      expect(upstreams[0]!.hits).toBe(0);
    });

    it('without shared sessions: the hold stays (the request waits for its instance)', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n, 0, HOST)));
      proxy = await startTestProxy(upstreams, { ...ON_OWN_RANGE, hold: { timeoutMs: 600_000 } });
      const p = proxy;
      await admin(p, 'POST', '/admin/instances/a/drain');
      const reply = request(`${p.url}/api/session`, { headers: { cookie: pin('a') } });
      expect(await replyOrHeld(p, reply)).toBe('held');
      await admin(p, 'POST', '/admin/instances/a/enable');
      expect(servedBy(await reply)).toBe('a');
    });
  });
});
