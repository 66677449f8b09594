import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { signAffinity } from '../../proxy/affinity.ts';
import { ProxyConfigError, type RunningProxy } from '../../proxy/index.ts';
import { AFFINITY_SECRET, ADMIN_TOKEN, admin, request, servedBy, startTestProxy, startUpstream, waitFor, type TestUpstream, closeAll, forEachEngine } from './helpers.ts';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

forEachEngine(() => {

  describe('admin API', () => {
    it('refuses a missing or wrong token with 401 on every route', async () => {
      upstreams = [await startUpstream('a')];
      proxy = await startTestProxy(upstreams);
      for (const path of ['/admin/instances', '/metrics', '/admin/instances/a/drain', '/nope']) {
        for (const token of [null, 'wrong', `${ADMIN_TOKEN}x`, ADMIN_TOKEN.slice(0, -1), '']) {
          const method = path.endsWith('drain') ? 'POST' : 'GET';
          const r = await admin(proxy, method, path, token);
          expect(r.status, `${method} ${path} with ${String(token)}`).toBe(401);
          expect(r.headers['www-authenticate']).toBe('Bearer');
        }
      }
      const basic = await request(`${proxy.adminUrl}/admin/instances`, { headers: { authorization: `Basic ${ADMIN_TOKEN}` } });
      expect(basic.status).toBe(401);
      // Nothing was changed by the refused drain.
      expect(proxy.instances()[0]!.state).toBe('enabled');
    });

    it('lists instances with state, health and in-flight count', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
      upstreams[1]!.healthy = false;
      proxy = await startTestProxy(upstreams);
      const r = await admin(proxy, 'GET', '/admin/instances');
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({
        instances: [
          { name: 'a', url: upstreams[0]!.url, state: 'enabled', healthy: true, inflight: 0, ejected: false, held: 0, weight: 1 },
          { name: 'b', url: upstreams[1]!.url, state: 'enabled', healthy: false, inflight: 0, ejected: false, held: 0, weight: 1 },
        ],
      });
    });

    it('enable / disable / unknown instance / wrong method', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
      proxy = await startTestProxy(upstreams);
      const d = await admin(proxy, 'POST', '/admin/instances/a/disable');
      expect(JSON.parse(d.body)).toMatchObject({ name: 'a', state: 'disabled' });
      for (let i = 0; i < 6; i++) expect(servedBy(await request(`${proxy.url}/x`))).toBe('b');
      const e = await admin(proxy, 'POST', '/admin/instances/a/enable');
      expect(JSON.parse(e.body)).toMatchObject({ name: 'a', state: 'enabled' });
      const served = new Set<string>();
      for (let i = 0; i < 4; i++) served.add(servedBy(await request(`${proxy.url}/x`)));
      expect(served).toEqual(new Set(['a', 'b']));
      expect((await admin(proxy, 'POST', '/admin/instances/zzz/drain')).status).toBe(404);
      expect((await admin(proxy, 'GET', '/admin/instances/a/drain')).status).toBe(405);
      expect((await admin(proxy, 'POST', '/admin/instances/a/drain?wait=1&timeout_ms=-3')).status).toBe(400);
    });

    it('drain stops new unpinned work; wait returns once in-flight reaches 0', async () => {
      upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
      const [a, b] = upstreams as [TestUpstream, TestUpstream];
      const held: http.ServerResponse[] = [];
      a.handler = (req, res) => {
        if (req.url === '/hold') held.push(res);
        else res.end(JSON.stringify({ instance: 'a' }));
      };
      proxy = await startTestProxy(upstreams);
      const p = proxy;
      const pinA = `lockstep_affinity=${signAffinity(AFFINITY_SECRET, 'a').value}`;
      const slow = request(`${p.url}/hold`, { headers: { cookie: pinA } });
      await waitFor('request held on a', () => held.length === 1);

      // A short wait times out while the request is still running.
      const early = JSON.parse((await admin(p, 'POST', '/admin/instances/a/drain?wait=1&timeout_ms=50')).body);
      expect(early).toEqual({ name: 'a', state: 'draining', drained: false, inflight: 1 });

      const drain = admin(p, 'POST', '/admin/instances/a/drain?wait=1&timeout_ms=60000');
      const listed = JSON.parse((await admin(p, 'GET', '/admin/instances')).body) as { instances: Array<{ name: string; state: string; inflight: number }> };
      expect(listed.instances[0]).toMatchObject({ name: 'a', state: 'draining', inflight: 1 });
      const bBefore = b.hits;
      for (let i = 0; i < 6; i++) expect(servedBy(await request(`${p.url}/x`))).toBe('b');
      expect(b.hits).toBe(bBefore + 6);

      held[0]!.end(JSON.stringify({ instance: 'a', done: true }));
      expect((await slow).status).toBe(200);
      const drained = await drain;
      expect(JSON.parse(drained.body)).toEqual({ name: 'a', state: 'draining', drained: true, inflight: 0 });

      // Without wait: answers at once.
      const now = JSON.parse((await admin(p, 'POST', '/admin/instances/a/drain')).body);
      expect(now).toEqual({ name: 'a', state: 'draining', drained: true, inflight: 0 });
    });

    it('serves Prometheus metrics: requests by instance and class, latency, in-flight, health, uploads', async () => {
      upstreams = [await startUpstream('a')];
      upstreams[0]!.handler = (req, res) => {
        res.statusCode = req.url!.startsWith('/api/upload') ? 200 : 404;
        res.end();
      };
      proxy = await startTestProxy(upstreams, { uploadPaths: ['/api/upload'] });
      await request(`${proxy.url}/missing`);
      await request(`${proxy.url}/api/upload`, { method: 'POST', body: 'x' });
      await request(`${proxy.url}/api/upload?x=1`, { method: 'POST', body: 'x' });
      const r = await admin(proxy, 'GET', '/metrics');
      expect(r.status).toBe(200);
      expect(r.headers['content-type']).toContain('text/plain');
      expect(r.body).toContain('lockstep_proxy_requests_total{instance="a",status_class="4xx"} 1');
      expect(r.body).toContain('lockstep_proxy_requests_total{instance="a",status_class="2xx"} 2');
      expect(r.body).toContain('lockstep_proxy_request_duration_seconds_count{instance="a"} 3');
      expect(r.body).toContain('lockstep_proxy_inflight_requests{instance="a"} 0');
      expect(r.body).toContain('lockstep_proxy_instance_healthy{instance="a"} 1');
      expect(r.body).toContain('lockstep_proxy_uploads_total{outcome="success"} 2');
      expect(r.body).toContain('lockstep_proxy_upload_success_ratio 1');
      expect(r.body).toContain('lockstep_proxy_retries_total');
      expect(r.body).toContain('lockstep_proxy_ejections_total');
    });

    it('refuses to bind the admin API to a non-loopback address unless allowed', async () => {
      upstreams = [await startUpstream('a')];
      await expect(startTestProxy(upstreams, { adminListen: { host: '0.0.0.0', port: 0 } })).rejects.toBeInstanceOf(ProxyConfigError);
    });
  });
});
