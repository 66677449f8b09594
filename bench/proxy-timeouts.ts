/**
 * Timeout accuracy: how late the proxy's 504 arrives for an instance that never answers, with
 * `timeouts.responseMs` (default 2000 ms), per engine. Prints min / median / max of the time from
 * sending the request to the 504, and their lateness against the setting. Measured, never asserted.
 *
 *   npx tsx bench/proxy-timeouts.ts              # 2000 ms, 10 requests per engine, 5 at a time
 *   RESPONSE_MS=500 RUNS=20 npx tsx bench/proxy-timeouts.ts
 *
 * Everything on 127.0.0.1, stopped at the end; bounded by RUNS x the timeout.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startProxy, type ProxyEngine } from '../proxy/index.ts';

const RESPONSE_MS = Number(process.env.RESPONSE_MS ?? 2000);
const RUNS = Number(process.env.RUNS ?? 10);
const PARALLEL = 5;

function timeTo504(url: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 504 ? resolve(performance.now() - t0) : reject(new Error(`got ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

const upstream = http.createServer((req, res) => {
  if (req.url === '/healthz') res.end('ok'); // else: never answers
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

for (const engine of ['undici', 'http-proxy-3'] as ProxyEngine[]) {
  const proxy = await startProxy({
    listen: { host: '127.0.0.1', port: 0 },
    adminListen: { host: '127.0.0.1', port: 0 },
    adminToken: 'bench-admin-token-0123456789',
    affinitySecret: 'bench-affinity-secret-0123456789',
    upstreams: [{ name: 'a', url: upstreamUrl }],
    engine,
    timeouts: { responseMs: RESPONSE_MS },
    passiveEjection: { consecutiveFailures: 0 },
  });
  const times: number[] = [];
  for (let i = 0; i < RUNS; i += PARALLEL) {
    times.push(...(await Promise.all(Array.from({ length: Math.min(PARALLEL, RUNS - i) }, () => timeTo504(`${proxy.url}/x`)))));
  }
  times.sort((x, y) => x - y);
  const f = (ms: number): string => `${ms.toFixed(0)} ms (${ms - RESPONSE_MS >= 0 ? '+' : ''}${(ms - RESPONSE_MS).toFixed(0)})`;
  console.log(`${engine.padEnd(13)} responseMs=${RESPONSE_MS}: 504 after min ${f(times[0]!)}, median ${f(times[Math.floor(times.length / 2)]!)}, max ${f(times.at(-1)!)} over ${times.length}`);
  await proxy.close();
}
upstream.closeAllConnections();
upstream.close();
