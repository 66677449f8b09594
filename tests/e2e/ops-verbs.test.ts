// The operator's verbs on three real sshd hosts (127.0.14.11-13, apps on 4100+): host subsets
// (a partial deploy leaves a mixed fleet and says so), logs (merged by time, followed), exec
// (service env, per-instance exit codes), the maintenance lock, and every verb's --json.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../deployer/cli/index.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { startProxy } from '../../proxy/index.ts';
import { proxyConfigFromInventory } from '../../proxy/inventory-config.ts';
import { currentOnDisk, makeReleases, repoRoot, startE2eFleet, type E2eFleet } from './support.ts';

let fleet: E2eFleet;
let r1 = '';
let r2 = '';

const bin = join(repoRoot, 'bin/lockstep.mjs');
/**
 * Run the CLI in this process (main(), the function bin/lockstep.mjs runs) with stdout and stderr
 * captured: the same code and output as the binary without a node start per call. The verbs that
 * need a process of their own (signals, pipes) are spawned.
 */
async function cli(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  const captured = { stdout: '', stderr: '' };
  const write = { stdout: process.stdout.write, stderr: process.stderr.write };
  process.stdout.write = ((c: string | Uint8Array) => ((captured.stdout += c.toString()), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((captured.stderr += c.toString()), true)) as typeof process.stderr.write;
  try {
    // Global options first: everything after `--` belongs to `exec`'s command.
    const status = await main(['--inventory', fleet.inventory.file, ...args]);
    return { status, ...captured };
  } finally {
    process.stdout.write = write.stdout;
    process.stderr.write = write.stderr;
  }
}
const onDisk = () => fleet.ssh.hosts.map((h) => currentOnDisk(h.deployTo));
const appLog = (i: number) => join(fleet.ssh.hosts[i]!.deployTo, 'shared', 'logs', 'app.log');

/** Wait (bounded) until `test()` is true. */
async function until(test: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  // No proxy for this fleet (its inventory names one): CLI deploys say --no-proxy.
  fleet = await startE2eFleet(3, '127.0.14.11', { proxy: false, deploy: { activation_timeout_ms: 20000, pause_ms: 0 } });
  [r1, r2] = (await makeReleases(fleet.inventory, ['good', 'good'])) as [string, string];
  const first = await deploy(fleet.inventory, { release: r1 });
  expect(first.ok, first.failure).toBe(true);
}, 120_000);
afterAll(async () => {
  await fleet?.stop();
});

describe('host subsets', () => {
  it('an unknown name or a glob matching nothing exits 2 naming it and listing the instances', async () => {
    const bad = await cli(['status', '--instances', 'ssh-1,ssh-9']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('no instance named "ssh-9"');
    expect(bad.stderr).toContain('ssh-1, ssh-2, ssh-3');
    expect((await cli(['exec', '--instances', 'web-*', '--', 'true'])).stderr).toContain('the pattern "web-*" matches no instance');
  });

  it('deploy --instances ssh-2 activates ssh-2 only, says loudly the fleet is mixed, and status shows it', async () => {
    const d = await cli(['deploy', '--release', r2, '--instances', 'ssh-2', '--no-proxy', '--json']);
    expect(d.status, d.stderr).toBe(0);
    const report = JSON.parse(d.stdout) as { state: string; mixed: boolean; selected: string[]; verification: { ok: boolean } };
    expect(report.selected).toEqual(['ssh-2']);
    expect(report.mixed).toBe(true);
    expect(report.state).toBe(`MIXED FLEET: ssh-1=${r1}, ssh-2=${r2}, ssh-3=${r1}`);
    expect(report.verification.ok).toBe(true);
    expect(d.stderr).toContain(`PARTIAL DEPLOY: only ssh-2 activated ${r2}; ssh-1, ssh-3 were not touched.`);
    expect(d.stderr).toContain('THE FLEET IS NOW MIXED');
    expect(onDisk()).toEqual([`releases/${r1}`, `releases/${r2}`, `releases/${r1}`]);
    // The lock and phase 1 covered the whole fleet: the release is present (verified) everywhere.
    for (const h of fleet.ssh.hosts) expect(existsSync(join(h.deployTo, 'releases', r2, 'manifest.json'))).toBe(true);

    const status = await cli(['status']);
    expect(status.status).toBe(1);
    expect(status.stdout).toContain(`MIXED FLEET: ssh-1=${r1}, ssh-2=${r2}, ssh-3=${r1}`);
    expect(status.stdout).toContain('NOT IN PARITY');
    // A glob selecting the instances that agree: their own verdict.
    const same = await cli(['status', '--instances', 'ssh-[13]']);
    expect(same.stdout).toContain(`PARITY: all 2 instances serve ${r1}`);
    // This fleet's inventory names a proxy that does not run: parity is not confirmed (exit 3), said in a note.
    expect(same.stdout).toContain('proxy admin API unreachable');
    expect(same.status).toBe(3);
    expect(same.stdout).not.toContain('ssh-2');
    // drift of a subset: the fleet's expected release (the newest activation, r2), ssh-1 only.
    const drift = JSON.parse((await cli(['drift', '--instances', 'ssh-1', '--json'])).stdout) as { expected: { release: string }; instances: { instance: string; items: { kind: string }[] }[] };
    expect(drift.expected.release).toBe(r2);
    expect(drift.instances.map((i) => i.instance)).toEqual(['ssh-1']);
    expect(drift.instances[0]!.items.map((i) => i.kind)).toContain('different-release');
  });

  it('rollback --instances ssh-2 --to r1 puts the fleet back on one release', async () => {
    const rb = await cli(['rollback', '--instances', 'ssh-2', '--to', r1, '--no-proxy', '--json']);
    expect(rb.status, rb.stderr).toBe(0);
    const report = JSON.parse(rb.stdout) as { state: string; mixed: boolean };
    expect(report.mixed).toBe(false);
    expect(report.state).toBe(`every instance serves ${r1}`);
    expect(onDisk()).toEqual([`releases/${r1}`, `releases/${r1}`, `releases/${r1}`]);
  });
});

describe('logs', () => {
  it('lines from every instance, prefixed with the instance, merged by the time in the lines', async () => {
    // Markers written with times after everything the apps logged, interleaved across hosts.
    const t0 = Date.now() + 3_600_000;
    const mark = (i: number, dt: number, msg: string) => appendFileSync(appLog(i), `${JSON.stringify({ level: 30, time: t0 + dt, msg })}\n`);
    mark(1, 1, 'marker-1');
    mark(0, 2, 'marker-2');
    mark(2, 3, 'marker-3');
    appendFileSync(appLog(2), 'marker-3-trace (no time of its own)\n');
    mark(1, 4, 'marker-4');
    const r = await cli(['logs', '--lines', '5']);
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    for (const name of ['ssh-1', 'ssh-2', 'ssh-3']) expect(lines.some((l) => l.startsWith(`${name} | {`) && !l.includes('marker'))).toBe(true);
    expect(lines.filter((l) => l.includes('marker'))).toEqual([
      expect.stringMatching(/^ssh-2 \| .*"marker-1"/),
      expect.stringMatching(/^ssh-1 \| .*"marker-2"/),
      expect.stringMatching(/^ssh-3 \| .*"marker-3"/),
      'ssh-3 | marker-3-trace (no time of its own)',
      expect.stringMatching(/^ssh-2 \| .*"marker-4"/),
    ]);
    const json = JSON.parse((await cli(['logs', '--lines', '2', '--instances', 'ssh-3', '--json'])).stdout) as { lines: { instance: string; line: string }[] };
    expect(json.lines.map((l) => l.line)).toEqual([expect.stringContaining('marker-3'), 'marker-3-trace (no time of its own)']);
  });

  it('-f prints a line written after it started, then ends cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, [bin, 'logs', '-f', '--lines', '1', '--instances', 'ssh-*', '--inventory', fleet.inventory.file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    try {
      await until(() => stdout.includes('ssh-1 | ') && stdout.includes('ssh-2 | ') && stdout.includes('ssh-3 | '), `the first lines of -f (stdout: ${stdout}; stderr: ${stderr})`);
      appendFileSync(appLog(2), `${JSON.stringify({ level: 30, time: Date.now(), msg: 'followed-line' })}\n`);
      await until(() => /ssh-3 \| .*followed-line/.test(stdout), 'the new line');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).not.toMatch(/error/i);
  });

  it('-f piped into `head -n 1` ends (EPIPE) at the next line', async () => {
    const child = spawn('bash', ['-c', `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} logs -f --lines 1 --instances ssh-1 --inventory ${JSON.stringify(fleet.inventory.file)} | head -n 1; echo "status \${PIPESTATUS[0]}" >&2`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    await until(() => stdout.includes('ssh-1 | '), 'the first line');
    // head has gone; the follower notices at its next write.
    let n = 0;
    const writer = setInterval(() => appendFileSync(appLog(0), `${JSON.stringify({ time: Date.now(), msg: `after-head-${n++}` })}\n`), 300);
    try {
      await Promise.race([exited, new Promise((_, reject) => setTimeout(() => reject(new Error(`logs -f | head did not end: ${stderr}`)), 30_000))]);
    } finally {
      clearInterval(writer);
      child.kill('SIGKILL');
    }
    expect(stderr).toContain('status 0');
  });
});

describe('the proxy access log', () => {
  it('the real proxy writes one JSON line per request (rate 1 here) and `logs --proxy` shows it', async () => {
    // The inventory's own settings (proxy.access_log default path), on this file's addresses.
    const config = proxyConfigFromInventory(fleet.inventory);
    const proxy = await startProxy({
      ...config,
      listen: { host: '127.0.14.10', port: 4180 },
      adminListen: { host: '127.0.14.10', port: 4181 },
      healthCheck: { intervalMs: 200, timeoutMs: 1000, rise: 1, fall: 2 },
      accessLog: { ...config.accessLog!, sampleRate: 1 },
    });
    try {
      await until(() => proxy.instances().every((i) => i.healthy), 'the proxy sees every instance healthy');
      for (let i = 0; i < 6; i++) {
        const res = await fetch(`${proxy.url}/version?secret=${i}`, { headers: { 'x-request-id': `req-${i}` } });
        expect(res.status).toBe(200);
        await res.text();
      }
    } finally {
      await proxy.close(); // flushes the log
    }
    const r = await cli(['logs', '--proxy', '--lines', '6', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const lines = (JSON.parse(r.stdout) as { lines: { instance: string; line: string }[] }).lines;
    expect(lines.map((l) => l.instance)).toEqual(Array(6).fill('proxy'));
    const entries = lines.map((l) => JSON.parse(l.line) as Record<string, unknown>);
    expect(entries.map((e) => e.request_id)).toEqual(['req-0', 'req-1', 'req-2', 'req-3', 'req-4', 'req-5']);
    for (const e of entries) expect(e).toMatchObject({ method: 'GET', path: '/version', status: 200, instance: expect.stringMatching(/^ssh-[123]$/), duration_ms: expect.any(Number) });
    expect(new Set(entries.map((e) => e.instance)).size).toBeGreaterThan(1);
  });
});

describe('exec', () => {
  it('runs in current with the service environment; output prefixed; per-instance exit codes', async () => {
    const r = await cli(['exec', '--concurrency', '2', '--', 'echo "env $LOCKSTEP_INSTANCE $PORT $LOG_DIR"; pwd -P']);
    expect(r.status, r.stderr).toBe(0);
    fleet.ssh.hosts.forEach((h, i) => {
      expect(r.stdout).toContain(`ssh-${i + 1} | env ssh-${i + 1} ${4100 + i} ${h.deployTo}/shared/logs`);
      expect(r.stdout).toContain(`ssh-${i + 1} | ${h.deployTo}/releases/${r1}`);
    });
    expect(r.stdout).toContain('ok: exit 0 on all 3 instances');
  });

  it('one instance failing: exit 1, its code in the table and in --json', async () => {
    const r = await cli(['exec', '--', 'echo out; [ "$LOCKSTEP_INSTANCE" != ssh-2 ] || exit 7']);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/ssh-2\s+7\s+\d+\s+FAILED/);
    expect(r.stdout).toContain('FAILED on ssh-2');
    const j = await cli(['exec', '--json', '--instances', 'ssh-1,ssh-2', '--', '[ "$LOCKSTEP_INSTANCE" != ssh-2 ] || exit 7']);
    expect(j.status).toBe(1);
    const doc = JSON.parse(j.stdout) as { ok: boolean; instances: { instance: string; exitCode: number }[] };
    expect(doc.ok).toBe(false);
    expect(doc.instances.map((i) => [i.instance, i.exitCode])).toEqual([['ssh-1', 0], ['ssh-2', 7]]);
  });
});

describe('maintenance lock', () => {
  it('lock acquire -m: a deploy is refused naming the holder and the message; lock release ends it', async () => {
    const taken = await cli(['lock', 'acquire', '-m', 'db migration until 23:00', '--json']);
    expect(taken.status, taken.stderr).toBe(0);
    expect((JSON.parse(taken.stdout) as { kind: string; message: string }).message).toBe('db migration until 23:00');
    const refused = await cli(['deploy', '--release', r2, '--no-proxy']);
    expect(refused.status).toBe(3);
    const said = refused.stdout + refused.stderr;
    expect(said).toMatch(/locked for maintenance by \S+@\S+ since .*: "db migration until 23:00"/);
    const status = await cli(['lock', 'status']);
    expect(status.stdout).toContain('live: maintenance lock: "db migration until 23:00"');
    expect((await cli(['lock', 'acquire', '-m', 'second'])).status).toBe(3);
    const released = await cli(['lock', 'release', '--json']);
    expect(released.status, released.stderr).toBe(0);
    expect((JSON.parse(released.stdout) as { broken: boolean }[]).map((r) => r.broken)).toEqual([true, true, true]);
    expect((await cli(['lock', 'status'])).status).toBe(0);
  });
});

describe('--json', () => {
  it('every verb prints one valid JSON document', async () => {
    // (deploy, rollback, exec, logs and lock acquire/release --json are parsed in the tests above.)
    const verbs = [['status'], ['drift'], ['releases'], ['history', '-n', '5'], ['lock', 'status'], ['verify', '--parity-only'], ['deploy', '--release', r1, '--dry-run', '--no-proxy']];
    for (const args of verbs) {
      const r = await cli(['--json', ...args]);
      expect(() => JSON.parse(r.stdout), `lockstep ${args.join(' ')} --json (exit ${r.status}): ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`).not.toThrow();
    }
  });
});
