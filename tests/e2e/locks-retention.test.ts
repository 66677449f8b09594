// Locks, a killed deploy, retention and rollback targets on three real sshd hosts.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { rollback } from '../../deployer/rollout/rollback.ts';
import { LockstepError } from '../../config/errors.ts';
import { currentOnDisk, makeReleases, repoRoot, startE2eFleet, type E2eFleet } from './support.ts';

let fleet: E2eFleet;
let good1 = '', good2 = '', bad1 = '', bad2 = '', good3 = '';

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', fleet.inventory.file], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const onDisk = () => fleet.ssh.hosts.map((h) => currentOnDisk(h.deployTo));
const all = (id: string) => [`releases/${id}`, `releases/${id}`, `releases/${id}`];

beforeAll(async () => {
  // No proxy runs for this fleet (its inventory has a proxy section): CLI deploys and rollbacks
  // say --no-proxy, or they would stop in preflight.
  fleet = await startE2eFleet(3, '127.0.0.61', { proxy: false, deploy: { keep_releases: 3, activation_timeout_ms: 6000, pause_ms: 1500 } });
  const ids = await makeReleases(fleet.inventory, ['good', 'good', 'broken', 'broken', 'good']);
  [good1, good2, bad1, bad2, good3] = ids as [string, string, string, string, string];
});
afterAll(async () => {
  await fleet?.stop();
});

describe('locks', () => {
  it('two deploys started at once: exactly one runs, the other reports the holder', async () => {
    const [a, b] = await Promise.all([deploy(fleet.inventory, { release: good1, message: 'A' }), deploy(fleet.inventory, { release: good1, message: 'B' })]);
    const ran = [a, b].filter((r) => r.phase !== 'lock');
    const refused = [a, b].filter((r) => r.phase === 'lock');
    expect(ran).toHaveLength(1);
    expect(ran[0]!.ok).toBe(true);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.failure).toMatch(/is locked by .*@.* \(pid \d+, since .*, release /);
    expect(refused[0]!.state).toBe('no instance was changed');
    expect(onDisk()).toEqual(all(good1));
  });

  it('a deploy killed with SIGKILL mid-rollout: status shows the mixed fleet and the stale lock; after lock release --force a deploy converges', async () => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), 'deploy', '--release', good2, '--no-verify', '--no-proxy', '--inventory', fleet.inventory.file], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        // ssh-1 switched and serving, the rollout pausing before ssh-2: kill it right there.
        if (err.includes(`[ssh-1] now serving ${good2}`)) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`deploy ended before it could be killed:\n${err}`)));
    });
    await new Promise((r) => child.once('close', r));
    expect(onDisk()).toEqual([`releases/${good2}`, `releases/${good1}`, `releases/${good1}`]);

    const status = cli(['status']);
    expect(status.status).toBe(1);
    expect(status.stdout).toMatch(new RegExp(`ssh-1 .*${good2}`));
    expect(status.stdout).toMatch(new RegExp(`ssh-2 .*${good1}`));
    expect(status.stdout).toContain('held by');

    const locks = cli(['lock', 'status']);
    expect(locks.stdout).toMatch(/STALE: holder process \d+ on this machine is gone/);
    const blocked = cli(['deploy', '--release', good2, '--no-verify', '--no-proxy']);
    expect(blocked.status).toBe(3);
    expect(blocked.stdout).toContain('is locked by');

    expect(cli(['lock', 'release']).status).toBe(3); // without --force nothing is broken
    const released = cli(['lock', 'release', '--force']);
    expect(released.status).toBe(0);
    expect(released.stdout).toContain('(broken)');
    const converge = cli(['deploy', '--release', good2, '--no-verify', '--no-proxy']);
    expect(converge.status).toBe(0);
    expect(onDisk()).toEqual(all(good2));
    expect(cli(['history', '--json']).stdout).toContain('lock-broken');
  });
});

describe('retention and rollback targets', () => {
  it('two failed deploys between good ones never remove the last good release; rollback lands on it', async () => {
    for (const broken of [bad1, bad2]) {
      const r = await deploy(fleet.inventory, { release: broken });
      expect(r.ok).toBe(false);
      expect(onDisk()).toEqual(all(good2));
    }
    const r3 = await deploy(fleet.inventory, { release: good3 });
    expect(r3.ok).toBe(true);
    for (const h of fleet.ssh.hosts) {
      const present = (id: string) => existsSync(join(h.deployTo, 'releases', id));
      // keep_releases 3: the failed ones went first; current and the rollback target stayed.
      expect([good1, good2, good3].map(present)).toEqual([true, true, true]);
      expect([bad1, bad2].map(present)).toEqual([false, false]);
    }
    const back = await rollback(fleet.inventory);
    expect(back.ok).toBe(true);
    expect(back.release).toBe(good2);
    expect(onDisk()).toEqual(all(good2));
  });

  it('rollback refuses, listing what each instance has, when the target is not on every instance', async () => {
    rmSync(join(fleet.ssh.host('ssh-2').deployTo, 'releases', good1), { recursive: true });
    let error: unknown;
    try {
      await rollback(fleet.inventory, { to: good1 });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LockstepError);
    const e = error as LockstepError;
    expect(e.exitCode).toBe(3);
    expect(e.message).toContain(`release ${good1} is missing or fails verification on ssh-2`);
    expect(e.details.join('\n')).toMatch(/ssh-1: current .*; present .*/);
    expect(onDisk()).toEqual(all(good2));
    // The default target skips releases some instance lacks: good1 is gone from ssh-2, so
    // after good2 -> good3 -> good2 nothing earlier is on every instance.
    const cliRefusal = cli(['rollback', '--no-proxy']);
    expect(cliRefusal.status).toBe(3);
    expect(cliRefusal.stderr).toContain('ssh-2: current');
  });
});

describe('interrupts', () => {
  it('SIGTERM mid-rollout finishes the step, rolls back what was switched, releases the lock and says so', async () => {
    expect(onDisk()).toEqual(all(good2));
    const child = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), 'deploy', '--release', good3, '--no-verify', '--no-proxy', '--inventory', fleet.inventory.file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes(`[ssh-1] now serving ${good3}`) && !child.killed) child.kill('SIGTERM');
      });
      child.on('close', (c) => resolve(c));
    });
    expect(code).toBe(3);
    expect(stderr).toContain('SIGTERM received: finishing the step in progress');
    expect(stdout).toContain('interrupted (signal)');
    expect(stdout).toContain(`rolled back: the whole fleet serves ${good2}`);
    expect(onDisk()).toEqual(all(good2));
    const locks = cli(['lock', 'status']);
    expect(locks.status).toBe(0);
    expect(locks.stdout).not.toContain('held');
  });
});
