import { afterEach, describe, expect, it } from 'vitest';
import { signAffinity } from '../../proxy/affinity.ts';
import type { RunningProxy } from '../../proxy/index.ts';
import { AFFINITY_SECRET, admin, affinityCookie, request, servedBy, startTestProxy, startUpstream, waitFor, type TestUpstream, closeAll, forEachEngine } from './helpers.ts';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

forEachEngine(() => {

  describe('sticky sessions with a signed affinity cookie', () => {
    it('pins a client to the instance that served it first', async () => {
      upstreams = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)));
      proxy = await startTestProxy(upstreams);
      const first = await request(`${proxy.url}/upload`);
      const cookie = affinityCookie(first);
      expect(cookie).toMatch(/^lockstep_affinity=[abc]\.[A-Za-z0-9_-]{43}$/);
      const setCookie = first.headers['set-cookie']!.find((c) => c.startsWith('lockstep_affinity='))!;
      expect(setCookie).toContain('HttpOnly');
      expect(setCookie).toContain('SameSite=Lax');
      expect(setCookie).toContain('Path=/');
      const home = servedBy(first);
      for (let i = 0; i < 12; i++) {
        const r = await request(`${proxy.url}/session`, { headers: { cookie: `other=1; ${cookie}; more=2` } });
        expect(servedBy(r)).toBe(home);
        // A valid cookie is not set again.
        expect(affinityCookie(r)).toBeUndefined();
      }
    });

    it('ignores a forged affinity cookie and balances the client normally', async () => {
      upstreams = await Promise.all(['a', 'b', 'c'].map((n) => startUpstream(n)));
      proxy = await startTestProxy(upstreams);
      const forgeries = [
        'lockstep_affinity=b.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
        'lockstep_affinity=b',
        `lockstep_affinity=${signAffinity('some-other-secret-0123456789', 'b').value}`,
        'lockstep_affinity=nosuch.AAAA',
        'xlockstep_affinity=' + signAffinity(AFFINITY_SECRET, 'b').value,
      ];
      for (const cookie of forgeries) {
        const served: string[] = [];
        for (let i = 0; i < 6; i++) {
          const r = await request(`${proxy.url}/x`, { headers: { cookie } });
          served.push(servedBy(r));
          // The client gets a genuine cookie for where it actually landed.
          expect(affinityCookie(r)).toBe(`lockstep_affinity=${signAffinity(AFFINITY_SECRET, servedBy(r)).value}`);
        }
        expect(new Set(served).size).toBe(3);
      }
    });

    it('moves a client pinned to a disabled instance, sets a new cookie and says so in a header', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
      proxy = await startTestProxy(upstreams);
      const cookie = `lockstep_affinity=${signAffinity(AFFINITY_SECRET, 'a').value}`;
      expect(servedBy(await request(`${proxy.url}/x`, { headers: { cookie } }))).toBe('a');
      expect((await admin(proxy, 'POST', '/admin/instances/a/disable')).status).toBe(200);
      const r = await request(`${proxy.url}/x`, { headers: { cookie } });
      expect(servedBy(r)).toBe('b');
      expect(r.headers['x-lockstep-repinned']).toBe('a -> b');
      expect(affinityCookie(r)).toBe(`lockstep_affinity=${signAffinity(AFFINITY_SECRET, 'b').value}`);
    });

    it('moves a client whose instance became unhealthy', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
      const [a] = upstreams as [TestUpstream];
      proxy = await startTestProxy(upstreams);
      const p = proxy;
      const cookie = `lockstep_affinity=${signAffinity(AFFINITY_SECRET, 'a').value}`;
      a.healthy = false;
      await waitFor('a unhealthy', () => !p.instances()[0]!.healthy);
      const r = await request(`${p.url}/x`, { headers: { cookie } });
      expect(servedBy(r)).toBe('b');
      expect(affinityCookie(r)).toContain('lockstep_affinity=b.');
    });

    it('keeps every Set-Cookie of the app separate and untouched, plus its own', async () => {
      upstreams = [await startUpstream('a')];
      const appCookies = ['sid=abc123; Path=/; HttpOnly; SameSite=Lax', 'theme=dark; Path=/', 'csrf=q,w;e=r; Path=/; Secure'];
      upstreams[0]!.handler = (_req, res) => {
        res.setHeader('set-cookie', appCookies);
        res.end('ok');
      };
      proxy = await startTestProxy(upstreams);
      const r = await request(`${proxy.url}/x`);
      const lines: string[] = [];
      for (let i = 0; i < r.rawHeaders.length; i += 2) if (r.rawHeaders[i]!.toLowerCase() === 'set-cookie') lines.push(r.rawHeaders[i + 1]!);
      expect(lines).toHaveLength(4);
      expect(lines.slice(0, 3)).toEqual(appCookies);
      expect(lines[3]).toMatch(/^lockstep_affinity=a\./);
    });
  });
});
