/**
 * Benchmark: a drift scan of 20 real sshd test hosts whose release has 1,000 files, against the
 * naive way (list the files, download every one over SFTP and hash it locally) in the same run.
 *
 *   npx tsx bench/drift.ts [--hosts 20] [--files 1000] [--runs 3] [--base 127.0.2.11] [--concurrency 8]
 *
 * Loopback only (sshd hosts on 127.0.2.11+, generated keys, temp dirs removed at the end).
 * Bounded: one fleet, a fixed number of runs. There is no app on the hosts (service commands are
 * `true`), so every instance reports `process-down`; the scan still does all of its work.
 * Two hosts get drift injected (one edited file, one stray file); both methods must find exactly
 * those, or the benchmark fails. Prints wall times (median of the runs), bytes moved (SSH payload:
 * commands sent + output received + files read; and the TCP bytes of the SSH connections) and
 * the ratios, plus the cost of only opening the 20 SSH connections as a floor.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { NodeSSH } from 'node-ssh';
import pLimit from 'p-limit';
import { packageRelease } from '../deployer/build/build.ts';
import { scanDrift } from '../deployer/drift/scan.ts';
import { openFleet, type TransportFactory } from '../deployer/fleet/fleet.ts';
import { loadInventory } from '../config/inventory.ts';
import type { Manifest, ManifestFile } from '../deployer/build/manifest.ts';
import { diffTree, type TreeDiff } from '../deployer/remote/parse.ts';
import { shq } from '../deployer/transport/shell.ts';
import { createTransport } from '../deployer/transport/index.ts';
import type { Transport } from '../deployer/transport/types.ts';
import { startSshHosts } from '../tests/helpers/sshd.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
const HOSTS = Number(arg('hosts', '20'));
const FILES = Number(arg('files', '1000'));
const RUNS = Math.min(10, Math.max(1, Number(arg('runs', '3'))));
const BASE = arg('base', '127.0.2.11');
const CONCURRENCY = Number(arg('concurrency', '8'));

interface Counters {
  payloadSent: number;
  payloadReceived: number;
  wireSent: number;
  wireReceived: number;
}
const zero = (): Counters => ({ payloadSent: 0, payloadReceived: 0, wireSent: 0, wireReceived: 0 });

/** The NodeSSH connection inside an SshTransport (benchmark-only introspection). */
function sshOf(t: Transport): NodeSSH {
  const inner = (t as Transport & { inner?: Transport }).inner ?? t;
  const ssh = (inner as unknown as { ssh?: NodeSSH }).ssh;
  if (!ssh) throw new Error(`${t.instance}: not a connected SSH transport`);
  return ssh;
}

/** TCP byte counters of an SshTransport's socket, when connected. */
function socketOf(t: Transport): { bytesRead: number; bytesWritten: number } | undefined {
  const conn = (t as unknown as { ssh?: NodeSSH }).ssh?.connection as unknown as { _sock?: { bytesRead: number; bytesWritten: number } } | null | undefined;
  return conn?._sock;
}

/** A transport factory that counts payload bytes, and the TCP bytes of each connection when it closes. */
function countingFactory(c: Counters): TransportFactory {
  return (instance, inventory) => {
    const t = createTransport(instance, inventory, { connectTimeoutMs: inventory.deploy.connect_timeout_ms });
    const wrapped: Transport & { inner: Transport } = {
      inner: t,
      instance: t.instance,
      connect: () => t.connect(),
      async exec(command, options) {
        c.payloadSent += Buffer.byteLength(command);
        const r = await t.exec(command, options);
        c.payloadReceived += Buffer.byteLength(r.stdout) + Buffer.byteLength(r.stderr);
        return r;
      },
      putFile: (l, r) => t.putFile(l, r),
      async readFile(p) {
        const text = await t.readFile(p);
        c.payloadReceived += Buffer.byteLength(text);
        return text;
      },
      async close() {
        const s = socketOf(t);
        if (s) {
          c.wireSent += s.bytesWritten;
          c.wireReceived += s.bytesRead;
        }
        await t.close();
      },
    };
    return wrapped;
  };
}

/** Deterministic pseudo-random bytes (xorshift) so every run builds the same release. */
function bytes(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** The naive scan of one host: list files, download each over SFTP, hash locally, diff. */
async function naiveScan(t: Transport, dir: string, manifest: Manifest, c: Counters): Promise<TreeDiff> {
  const list = `cd ${shq(dir)} && find . -type f ! -path ./manifest.json -printf '%P\\t%s\\t%m\\n'`;
  c.payloadSent += list.length;
  const r = await t.exec(list);
  c.payloadReceived += r.stdout.length;
  const sftp = await sshOf(t).requestSFTP();
  const limit = pLimit(16);
  const files: ManifestFile[] = await Promise.all(
    r.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) =>
        limit(async () => {
          const [path, size, mode] = line.split('\t') as [string, string, string];
          const content = await new Promise<Buffer>((res, rej) => sftp.readFile(`${dir}/${path}`, (e: Error | null | undefined, b: Buffer) => (e ? rej(e) : res(b))));
          c.payloadReceived += content.length;
          return { path, size: Number(size), mode: mode.padStart(3, '0'), sha256: createHash('sha256').update(content).digest('hex') };
        }),
      ),
  );
  sftp.end();
  files.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  return diffTree(manifest.files, files);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(os.tmpdir(), 'lockstep-bench-drift-'));
  const ssh = await startSshHosts(HOSTS, { baseAddress: BASE, namePrefix: 'b' });
  try {
    // A release of FILES files, 256 B .. 8 KiB each, in 20 directories.
    const out = join(work, 'build');
    for (let i = 0; i < FILES; i++) {
      const d = join(out, `d${String(i % 20).padStart(2, '0')}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, `f${String(i).padStart(4, '0')}.dat`), bytes(i + 1, 256 + ((i * 7919) % 8000)));
    }
    const built = await packageRelease(out, join(work, 'artifacts'), { revision: null, dirty: false, time: new Date('2026-11-30T08:00:00Z').toISOString(), pinned: true });
    const manifest = built.manifest;
    const file = ssh.writeInventory({ deploy: { concurrency: CONCURRENCY } });
    const inventory = loadInventory(file);

    // Install it on every host the way a deploy's phase 1 does, then activate and record it.
    const fleet = openFleet(inventory);
    const installed = await fleet.each(async (o) => {
      await o.prepare();
      await o.uploadArtifact(built.artifact, manifest);
      await o.unpackRelease(manifest);
      await o.linkShared(manifest.release);
      await o.activate(manifest.release);
      await o.appendHistory({ event: 'activate', release: manifest.release, digest: manifest.digest, previous: null });
    });
    await fleet.close();
    const bad = installed.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (bad) throw bad.reason;
    // A clean fleet first (the usual cron case): nothing to list file by file.
    const cleanBytes = zero();
    const ct0 = performance.now();
    const clean = await scanDrift(inventory, { factory: countingFactory(cleanBytes), proxyClient: null });
    const cleanMs = performance.now() - ct0;
    if (clean.report.instances.some((i) => i.items.some((x) => x.kind !== 'process-down'))) throw new Error('the clean fleet has drift');

    appendFileSync(join(ssh.hosts[0]!.deployTo, 'releases', manifest.release, manifest.files[500]!.path), 'x');
    writeFileSync(join(ssh.hosts[1]!.deployTo, 'releases', manifest.release, 'd03', 'stray.dat'), 'stray');
    const expectFound = (name: string, d: { changed: unknown[]; added: unknown[]; missing: unknown[] }) =>
      name === ssh.hosts[0]!.name ? d.changed.length === 1 && d.added.length === 0 : name === ssh.hosts[1]!.name ? d.added.length === 1 && d.changed.length === 0 : d.changed.length + d.added.length + d.missing.length === 0;

    const connectTimes: number[] = [];
    const scanTimes: number[] = [];
    const naiveTimes: number[] = [];
    let scanBytes = zero();
    let naiveBytes = zero();
    for (let run = 0; run < RUNS; run++) {
      // Baseline: open every SSH connection (host key checked, authenticated), run `true`, close.
      let t0 = performance.now();
      const bf = openFleet(inventory);
      await bf.each(async (o) => void (await o.run('true')));
      await bf.close();
      connectTimes.push(performance.now() - t0);

      // Drift scan, exactly as `lockstep drift` runs it.
      const c = zero();
      t0 = performance.now();
      const { report } = await scanDrift(inventory, { factory: countingFactory(c), proxyClient: null });
      scanTimes.push(performance.now() - t0);
      scanBytes = c;
      for (const i of report.instances) {
        const files = i.items.find((x) => x.kind === 'files')?.detail as { changed: unknown[]; added: unknown[]; missing: unknown[] } | undefined;
        if (i.status === 'unchecked' || !expectFound(i.instance, files ?? { changed: [], added: [], missing: [] })) throw new Error(`drift scan result unexpected on ${i.instance}: ${JSON.stringify(i.items)}`);
      }

      // The naive way: same connections (host keys verified), same concurrency.
      const n = zero();
      t0 = performance.now();
      const nf = openFleet(inventory, { factory: countingFactory(n) });
      const diffs = await nf.each(async (o) => {
        await o.transport.connect();
        return naiveScan(o.transport, `${o.layout.releases}/${manifest.release}`, manifest, n);
      });
      await nf.close();
      naiveTimes.push(performance.now() - t0);
      naiveBytes = n;
      diffs.forEach((d, i) => {
        if (d.status === 'rejected') throw d.reason;
        if (!expectFound(nf.ops[i]!.name, d.value)) throw new Error(`naive result unexpected on ${nf.ops[i]!.name}`);
      });
    }

    const mb = (x: number) => `${(x / 1e6).toFixed(2)} MB`;
    const s = median(scanTimes);
    const nv = median(naiveTimes);
    console.log(`release: ${FILES} files, ${mb(built.bytes)} (artifact ${mb(built.artifactBytes)}); ${HOSTS} sshd hosts on ${BASE}+; concurrency ${inventory.deploy.concurrency}; ${os.cpus().length} cores; median of ${RUNS} runs`);
    console.log(`connect only: ${median(connectTimes).toFixed(0)} ms wall (open ${HOSTS} SSH connections, run \`true\`, close: the floor under any remote check)`);
    console.log(`clean scan  : ${cleanMs.toFixed(0)} ms wall (one run); payload ${mb(cleanBytes.payloadSent)} sent, ${mb(cleanBytes.payloadReceived)} received (the expected manifest read once from a host); TCP ${mb(cleanBytes.wireSent + cleanBytes.wireReceived)}`);
    console.log(`drift scan  : ${s.toFixed(0)} ms wall (runs ${scanTimes.map((x) => x.toFixed(0)).join(', ')}); payload ${mb(scanBytes.payloadSent)} sent, ${mb(scanBytes.payloadReceived)} received; TCP ${mb(scanBytes.wireSent + scanBytes.wireReceived)}`);
    console.log(`naive SFTP  : ${nv.toFixed(0)} ms wall (runs ${naiveTimes.map((x) => x.toFixed(0)).join(', ')}); payload ${mb(naiveBytes.payloadSent)} sent, ${mb(naiveBytes.payloadReceived)} received; TCP ${mb(naiveBytes.wireSent + naiveBytes.wireReceived)}`);
    console.log(
      `ratio (naive / drift scan): time ${(nv / s).toFixed(1)}x, payload received ${(naiveBytes.payloadReceived / scanBytes.payloadReceived).toFixed(0)}x, TCP bytes ${((naiveBytes.wireSent + naiveBytes.wireReceived) / Math.max(1, scanBytes.wireSent + scanBytes.wireReceived)).toFixed(0)}x`,
    );
  } finally {
    await ssh.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
