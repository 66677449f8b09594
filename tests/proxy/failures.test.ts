import { afterEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../../proxy/index.ts';
import { request, requestJson, servedBy, startTestProxy, startUpstream, type TestUpstream, closeAll, forEachEngine } from './helpers.ts';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

// Health checks that will not notice anything during the test: the request path alone must cope.
const SLOW_CHECKS = { healthCheck: { intervalMs: 600_000, timeoutMs: 500, rise: 1, fall: 1 } };

forEachEngine(() => {

  describe('upstream failures become JSON answers, never a crash or a hung request', () => {
    it('an upstream that refuses connections -> 502 JSON, and the proxy keeps serving', async () => {
      const a = await startUpstream('a');
      upstreams = [a];
      proxy = await startTestProxy(upstreams, SLOW_CHECKS);
      await a.close(); // now refuses; the proxy still believes it is healthy
      for (let i = 0; i < 5; i++) {
        const r = await requestJson<{ error: string; status: number }>(`${proxy.url}/x`);
        expect(r.status).toBe(502);
        expect(r.headers['content-type']).toBe('application/json');
        expect(r.json).toMatchObject({ error: 'bad_gateway', status: 502 });
      }
      // Same port comes back: the proxy (still alive) serves again.
      const port = Number(new URL(a.url).port);
      const again = await startUpstream('a', port);
      upstreams = [again];
      expect(servedBy(await request(`${proxy.url}/x`))).toBe('a');
    });

    it('no healthy instance -> 503 JSON', async () => {
      const a = await startUpstream('a');
      a.healthy = false;
      upstreams = [a];
      proxy = await startTestProxy(upstreams, SLOW_CHECKS);
      const r = await requestJson<{ error: string }>(`${proxy.url}/x`);
      expect(r.status).toBe(503);
      expect(r.json.error).toBe('no_instance_available');
      expect(a.hits).toBe(0);
    });

    it('an upstream that accepts and never answers -> 504 JSON', async () => {
      const a = await startUpstream('a');
      a.handler = () => undefined; // never answers
      upstreams = [a];
      proxy = await startTestProxy(upstreams, { ...SLOW_CHECKS, timeouts: { responseMs: 200 } });
      const r = await requestJson<{ error: string; status: number }>(`${proxy.url}/x`);
      expect(r.status).toBe(504);
      expect(r.json).toMatchObject({ error: 'gateway_timeout', status: 504 });
      expect(proxy.instances()[0]!.inflight).toBe(0);
    });

    it('an upstream that stalls mid-body -> the client sees the response cut, the proxy survives', async () => {
      const a = await startUpstream('a');
      a.handler = (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 100 });
        res.write('partial');
      };
      upstreams = [a];
      proxy = await startTestProxy(upstreams, { ...SLOW_CHECKS, timeouts: { idleMs: 200 } });
      await expect(request(`${proxy.url}/x`)).rejects.toThrow();
      a.handler = (_req, res) => res.end('ok');
      expect((await request(`${proxy.url}/x`)).body).toBe('ok');
    });

    it('an upstream that resets the connection mid-request -> 502 JSON', async () => {
      const a = await startUpstream('a');
      a.handler = (req) => req.socket.destroy();
      upstreams = [a];
      proxy = await startTestProxy(upstreams, SLOW_CHECKS);
      const r = await requestJson<{ error: string }>(`${proxy.url}/x`);
      expect(r.status).toBe(502);
      expect(r.json.error).toBe('bad_gateway');
    });

    it('a client that aborts mid-request does not leave the instance with in-flight work', async () => {
      const a = await startUpstream('a');
      let arrived = 0;
      a.handler = () => {
        arrived++; // hold the request; the client gives up
      };
      upstreams = [a];
      proxy = await startTestProxy(upstreams, SLOW_CHECKS);
      const http = await import('node:http');
      const req = http.request(`${proxy.url}/slow`, { agent: false });
      req.on('error', () => undefined);
      req.end();
      const p = proxy;
      for (let i = 0; i < 200 && arrived === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(p.instances()[0]!.inflight).toBe(1);
      req.destroy();
      for (let i = 0; i < 200 && p.instances()[0]!.inflight !== 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(p.instances()[0]!.inflight).toBe(0);
    });
  });
});
