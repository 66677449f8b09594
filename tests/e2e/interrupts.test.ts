// Issue 12, item 7: the real CLI (node bin/lockstep.mjs) against three real sshd hosts behind the
// real proxy. A closed pipe (`| head -3`) and signals at any step (lock wait, rollout,
// post-deploy verification) end with every lock released and one line saying the fleet's state.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { lockFleet, newLockHolder, unlockFleet } from '../../deployer/fleet/lock.ts';
import { openFleet } from '../../deployer/fleet/fleet.ts';
import { currentOnDisk, makeReleases, repoRoot, startE2eFleet, type E2eFleet } from './support.ts';

let fleet: E2eFleet;
let g1: string, g2: string, g3: string, g4: string;
const lockstep = join(repoRoot, 'bin/lockstep.mjs');

function cli(args: string[]) {
  return spawnSync(process.execPath, [lockstep, ...args, '--inventory', fleet.inventory.file], { encoding: 'utf8', timeout: 120_000 });
}

function onDisk(): (string | null)[] {
  return fleet.ssh.hosts.map((h) => currentOnDisk(h.deployTo));
}

/** Every instance's lock is free (`lockstep lock status`). */
function expectLocksFree(): void {
  const locks = cli(['lock', 'status', '--json']);
  expect(locks.status, locks.stderr).toBe(0);
  const rows = JSON.parse(locks.stdout) as { instance: string; held: boolean }[];
  expect(rows.map((r) => [r.instance, r.held])).toEqual([
    ['ssh-1', false],
    ['ssh-2', false],
    ['ssh-3', false],
  ]);
}

/** The one release every instance is on, or fail naming the mixed state. */
function oneRelease(): string {
  const d = onDisk();
  expect(new Set(d).size, `mixed fleet: ${d.join(', ')}`).toBe(1);
  return d[0]!.replace('releases/', '');
}

/**
 * Spawn `lockstep deploy ...`; call `onStderr` with the stderr so far on every chunk (it may
 * signal the child). Bounded by a 180 s kill. @returns exit code, signal, stdout and stderr.
 */
function spawnDeploy(args: string[], onStderr: (stderr: string, kill: (s: NodeJS.Signals) => void) => void) {
  const child = spawn(process.execPath, [lockstep, 'deploy', ...args, '--inventory', fleet.inventory.file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let sent = false;
  const kill = (s: NodeJS.Signals) => {
    if (sent) return;
    sent = true;
    child.kill(s);
  };
  const guard = setTimeout(() => child.kill('SIGKILL'), 180_000);
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    onStderr(stderr, kill);
  });
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; sent: boolean }>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr, sent });
    });
  });
}

/**
 * Run a bash pipeline without blocking this process (the proxy under test runs in it).
 * Bounded by a 180 s kill. @returns exit status (with pipefail), stdout and stderr.
 */
function bash(script: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn('bash', ['-o', 'pipefail', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const guard = setTimeout(() => child.kill('SIGKILL'), 180_000);
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    child.on('close', (status) => {
      clearTimeout(guard);
      resolve({ status, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.111', { deploy: { batch_size: 1, canary: true, drain_timeout_ms: 5000, activation_timeout_ms: 20000 } });
  [g1, g2, g3, g4] = (await makeReleases(fleet.inventory, ['good', 'good', 'good', 'good'])) as [string, string, string, string];
  const first = await deploy(fleet.inventory, { release: g1, proxy: await proxyControlFor(fleet.inventory, () => {}) });
  expect(first.ok, first.failure).toBe(true);
}, 240_000);
afterAll(async () => {
  await fleet?.stop();
});

describe('pipes', () => {
  it('`lockstep deploy 2>&1 | head -3`: the reader goes away mid-deploy; the process is not killed, the lock is released, the fleet is on one release', async () => {
    const r = await bash(`${JSON.stringify(process.execPath)} ${JSON.stringify(lockstep)} deploy --release ${g2} --no-verify --inventory ${JSON.stringify(fleet.inventory.file)} 2>&1 | head -3`);
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
    // The deploy was interrupted in an orderly way (3), not killed by the EPIPE (an uncaught error exits 1).
    expect(r.status).toBe(3);
    expectLocksFree();
    expect([g1, g2]).toContain(oneRelease());
  }, 240_000);

  it('`lockstep deploy | true` (stdout closed from the start): EPIPE on the report never kills it; one line on stderr says the state', async () => {
    const before = oneRelease();
    const target = before === g2 ? g3 : g2;
    const r = await bash(`${JSON.stringify(process.execPath)} ${JSON.stringify(lockstep)} deploy --release ${target} --inventory ${JSON.stringify(fleet.inventory.file)} | true`);
    expect(r.stderr).not.toMatch(/EPIPE\n\s+at /);
    expect(r.stderr).not.toContain('unexpected error');
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('lockstep: EPIPE'));
    expect(lines).toEqual([`lockstep: EPIPE on stdout while writing the report; the lock is released; fleet state: every instance serves ${target}`]);
    expectLocksFree();
    expect(oneRelease()).toBe(target);
  }, 240_000);
});

describe('signals', () => {
  it('SIGTERM during the post-deploy verification: exit 3, one line saying every instance serves the release, the lock is free', async () => {
    const target = g4;
    const r = await spawnDeploy(['--release', target], (stderr, kill) => {
      if (stderr.includes('[verify] post-deploy verification')) kill('SIGTERM');
    });
    expect(r.sent).toBe(true);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(3);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('lockstep: interrupted'));
    expect(lines).toEqual([expect.stringContaining(`interrupted (SIGTERM); the lock is released; fleet state: every instance serves ${target}; the post-deploy verification did not run to the end`)]);
    expectLocksFree();
    expect(oneRelease()).toBe(target);
  }, 240_000);

  it('SIGHUP while waiting for a held lock (--wait): stops waiting at once, "no instance was changed", its own lock never taken', async () => {
    const before = oneRelease();
    const f = openFleet(fleet.inventory);
    const holder = newLockHolder('test', 'held by the test');
    await lockFleet(f, holder);
    try {
      const r = await spawnDeploy(['--release', g1, '--wait', '120s', '--no-verify'], (stderr, kill) => {
        if (stderr.includes('waiting up to')) kill('SIGHUP');
      });
      expect(r.sent).toBe(true);
      expect(r.code).toBe(3);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('lockstep: interrupted'));
      expect(lines).toEqual([expect.stringContaining('interrupted (SIGHUP); the lock is released; fleet state: no instance was changed')]);
      expect(oneRelease()).toBe(before);
    } finally {
      await unlockFleet(f, String(holder.token));
      await f.close();
    }
    expectLocksFree();
  }, 240_000);

  it('SIGINT during the preflight: nothing changed, one line, locks free', async () => {
    const before = oneRelease();
    const r = await spawnDeploy(['--release', g2, '--no-verify'], (stderr, kill) => {
      if (stderr.includes('] preflight')) kill('SIGINT');
    });
    expect(r.sent).toBe(true);
    expect(r.code).toBe(3);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('lockstep: interrupted'))).toEqual([expect.stringContaining('interrupted (SIGINT); the lock is released; fleet state: no instance was changed')]);
    expect(oneRelease()).toBe(before);
    expectLocksFree();
  }, 240_000);
});
