import { afterEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../proxy/index.ts';
import { request, startTestProxy, startUpstream, type TestUpstream, closeAll, forEachEngine } from './helpers.ts';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

forEachEngine(() => {

  describe('forwarding headers', () => {
    it('sets X-Forwarded-For/-Proto/-Host and X-Request-Id, and drops hop-by-hop headers', async () => {
      upstreams = [await startUpstream('a')];
      proxy = await startTestProxy(upstreams);
      const host = new URL(proxy.url).host;
      const r = await request(`${proxy.url}/x`, {
        headers: { 'x-custom': 'kept', connection: 'keep-alive, x-secret-hop', 'x-secret-hop': 'dropped', 'proxy-authorization': 'Basic x' },
      });
      expect(r.status).toBe(200);
      const h = upstreams[0]!.lastHeaders!;
      expect(h['x-forwarded-for']).toBe('127.0.0.1');
      expect(h['x-forwarded-proto']).toBe('http');
      expect(h['x-forwarded-host']).toBe(host);
      expect(h['x-custom']).toBe('kept');
      expect(h['x-secret-hop']).toBeUndefined();
      expect(h['proxy-authorization']).toBeUndefined();
      expect(h['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      // The client sees the same id, to quote in a bug report.
      expect(r.headers['x-request-id']).toBe(h['x-request-id']);
    });

    it('replaces X-Forwarded-* claimed by an untrusted client', async () => {
      upstreams = [await startUpstream('a')];
      proxy = await startTestProxy(upstreams);
      await request(`${proxy.url}/x`, {
        headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', 'x-request-id': 'mine' },
      });
      const h = upstreams[0]!.lastHeaders!;
      expect(h['x-forwarded-for']).toBe('127.0.0.1');
      expect(h['x-forwarded-proto']).toBe('http');
      expect(h['x-forwarded-host']).not.toBe('evil.example');
      expect(h['x-request-id']).toBe('mine');
    });

    it('appends to X-Forwarded-For from a trusted proxy network', async () => {
      upstreams = [await startUpstream('a')];
      proxy = await startTestProxy(upstreams, { trustedProxies: ['127.0.0.0/8'] });
      await request(`${proxy.url}/x`, { headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https' } });
      const h = upstreams[0]!.lastHeaders!;
      expect(h['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
      expect(h['x-forwarded-proto']).toBe('https');
    });

    it('passes request bodies and methods through', async () => {
      upstreams = [await startUpstream('a')];
      upstreams[0]!.handler = (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => res.end(`${req.method} ${Buffer.concat(chunks).length}`));
      };
      proxy = await startTestProxy(upstreams);
      const body = Buffer.alloc(300_000, 7);
      const r = await request(`${proxy.url}/api/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
      expect(r.body).toBe('POST 300000');
    });
  });
});
