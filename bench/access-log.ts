/**
 * CPU cost of the proxy's access log per request (proxy/access-log.ts), measured as this
 * process's own CPU time (process.cpuUsage: robust when other load shares the machine), for
 * sample rates 0 (the call only), 0.01, 0.1 and 1, including the asynchronous writes to the file
 * (the log is closed, so every buffered line is written, before the clock stops).
 *
 *   node --import tsx bench/access-log.ts            # 200,000 requests per rate, 3 rounds
 *   REQUESTS=50000 ROUNDS=1 node --import tsx bench/access-log.ts
 *
 * Compare with the proxy's own CPU per request (bench/proxy.ts, bench/proxy-results.md: about
 * 80 us). Bounded: a fixed number of calls; writes only to a temp dir that is removed.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AccessLog } from '../proxy/access-log.ts';

const requests = Number(process.env.REQUESTS ?? 200_000);
const rounds = Number(process.env.ROUNDS ?? 3);
const dir = mkdtempSync(join(tmpdir(), 'lockstep-access-bench-'));
const rates = [0, 0.01, 0.1, 1];

async function measure(rate: number, round: number): Promise<{ usPerRequest: number; bytes: number }> {
  const file = join(dir, `access-${rate}-${round}.log`);
  const log = new AccessLog({ path: file, sampleRate: rate });
  await new Promise((r) => setTimeout(r, 50)); // the destination opens its file
  const before = process.cpuUsage();
  for (let i = 0; i < requests; i++) {
    log.record('GET', `/api/items/${i}?q=secret`, 200, 'web-2', 3.25, '6f1c2d3e-0000-4000-8000-00000000000a');
    // Yield now and then, as a server does between requests, so buffered lines get written.
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  await log.close();
  const used = process.cpuUsage(before);
  let bytes = 0;
  try {
    bytes = statSync(file).size;
  } catch {
    /* rate 0: no line, maybe no file */
  }
  return { usPerRequest: (used.user + used.system) / requests, bytes };
}

const results = new Map<number, number[]>(rates.map((r) => [r, []]));
for (let round = 0; round < rounds; round++) {
  for (const rate of rates) {
    const m = await measure(rate, round);
    results.get(rate)!.push(m.usPerRequest);
    console.log(`round ${round + 1}, rate ${rate}: ${m.usPerRequest.toFixed(2)} us CPU/request, ${m.bytes} bytes written`);
  }
}
console.log(`\n${requests} requests per rate and round; median CPU us/request (this process, writes included):`);
for (const rate of rates) {
  const sorted = [...results.get(rate)!].sort((a, b) => a - b);
  console.log(`  rate ${rate}: ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)}`);
}
rmSync(dir, { recursive: true, force: true });
