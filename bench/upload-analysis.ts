/**
 * Benchmark: upload plus composite analysis of a large ward CSV (default 50,000 rows, generated
 * by the seeded sample-data generator), against a running app or through the proxy.
 * Prints the median, min and max time of `--runs` rounds (upload + POST /api/analysis, each
 * round a fresh session) and, when the instance runs on this machine, its peak memory
 * (VmHWM of the pid /version reports; through a proxy that is whichever instance answered).
 *
 * Usage: npx tsx bench/upload-analysis.ts --url http://127.0.0.1:8080 [--rows 50000] [--runs 5]
 * Timings are for comparison within one machine and run, not absolute promises.
 */
import { readFileSync } from 'node:fs';
import { generateSample } from '../app/sample-data/generate.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

function peakRssMiB(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const url = arg('url', 'http://127.0.0.1:8080');
  const rows = Number(arg('rows', '50000'));
  const runs = Number(arg('runs', '5'));
  const cols = 250;
  const { csv, wards } = await generateSample({ seed: 7, cols, rows: Math.ceil(rows / cols) });
  const bytes = Buffer.byteLength(csv);
  console.log(`CSV: ${wards} wards, ${(bytes / 1048576).toFixed(1)} MiB; ${runs} rounds against ${url}`);
  const times: number[] = [];
  const uploadTimes: number[] = [];
  const pids = new Set<number>();
  for (let r = 0; r < runs; r++) {
    const form = new FormData();
    form.append('file', new Blob([csv], { type: 'text/csv' }), 'bench.csv');
    const t0 = performance.now();
    const up = await fetch(`${url}/api/upload`, { method: 'POST', body: form });
    if (up.status !== 200) throw new Error(`upload answered ${up.status}: ${await up.text()}`);
    await up.arrayBuffer();
    uploadTimes.push(performance.now() - t0);
    const cookie = up.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const an = await fetch(`${url}/api/analysis`, { method: 'POST', headers: { cookie } });
    if (an.status !== 200) throw new Error(`analysis answered ${an.status}: ${await an.text()}`);
    await an.arrayBuffer();
    times.push(performance.now() - t0);
    const version = (await (await fetch(`${url}/version`, { headers: { cookie } })).json()) as { pid?: number };
    if (version.pid) pids.add(version.pid);
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  };
  console.log(
    `upload + composite analysis: median ${median(times).toFixed(0)} ms (min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)}); ` +
      `of which upload: median ${median(uploadTimes).toFixed(0)} ms`,
  );
  for (const pid of pids) {
    const peak = peakRssMiB(pid);
    console.log(`instance pid ${pid}: peak RSS ${peak === null ? 'unknown (not on this machine)' : `${peak.toFixed(0)} MiB`}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
