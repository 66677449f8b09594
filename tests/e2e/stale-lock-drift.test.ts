// Issue 12, item 6: a stale lock never hides drift. A deploy killed with SIGKILL while an instance
// is draining in the real proxy leaves that instance out of rotation under a dead deploy's lock:
// `drift` must name the stale lock and the draining instance (exit 1), `status` must not say
// PARITY, and `drift --repair` against a LIVE lock must report it and exit (it used to hang with
// an SSH connection open). Three real sshd hosts, the real app, the real proxy in this process.
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { proxyClientFromInventory } from '../../deployer/balancer/admin-client.ts';
import { openFleet } from '../../deployer/fleet/fleet.ts';
import { breakLocks, lockFleet, newLockHolder, unlockFleet } from '../../deployer/fleet/lock.ts';
import { loadLocalRelease } from '../../deployer/build/release-source.ts';
import type { DriftReport } from '../../deployer/drift/types.ts';
import { makeReleases, repoRoot, startE2eFleet, type E2eFleet, runCliAsync, type CliRun } from './support.ts';

let fleet: E2eFleet;
let good1 = '';
let good2 = '';
const progress = () => {};

/** The CLI in a child process, asynchronously (the proxy runs in this process), killed after `timeoutMs`. */
function cli(args: string[], timeoutMs = 120_000): Promise<CliRun> {
  return runCliAsync(fleet.inventory.file, args, timeoutMs);
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.161', { deploy: { activation_timeout_ms: 15000 } });
  [good1, good2] = (await makeReleases(fleet.inventory, ['good', 'good'])) as [string, string];
  const r = await deploy(fleet.inventory, { release: good1, proxy: await proxyControlFor(fleet.inventory, progress), progress });
  if (!r.ok) throw new Error(`first deploy failed: ${r.failure}`);
});
afterAll(async () => {
  await fleet?.stop();
});

describe('a stale lock never hides drift', () => {
  it('deploy killed with SIGKILL while ssh-1 drains: drift names the stale lock and the draining instance, status is not PARITY, and the named commands recover', async () => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), 'deploy', '--release', good2, '--no-verify', '--inventory', fleet.inventory.file], { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        // Printed once the proxy has ssh-1 draining: kill the deploy right there.
        if (err.includes('[ssh-1] switching current ->') && !child.killed) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`deploy ended before it could be killed:\n${err}`)));
    });
    await new Promise((r) => child.once('close', r));
    expect((await proxyClientFromInventory(fleet.inventory).listInstances()).find((i) => i.name === 'ssh-1')?.state).toBe('draining');

    const drift = await cli(['drift']);
    expect(drift.status).toBe(1);
    expect(drift.stdout).toMatch(/ssh-1: DRIFT/);
    expect(drift.stdout).toMatch(/- proxy-state: the proxy has it draining/);
    expect(drift.stdout).toMatch(/- stale-lock: locked by a dead deploy: \S+@\S+ pid \d+ \(release [^)]+\), \d+ s old: stale, holder process \d+ on this machine is gone/);
    expect(drift.stdout).toContain('`lockstep lock release --force`');
    expect(drift.stdout).not.toContain('NOTE: a deploy holds the lock');
    const json = JSON.parse((await cli(['drift', '--json'])).stdout) as DriftReport;
    expect(json.lockHeld).toBe(false);
    for (const i of json.instances) expect(i.items.map((x) => x.kind)).toContain('stale-lock');
    expect(json.instances[0]!.items.find((x) => x.kind === 'stale-lock')!.detail).toMatchObject({ recover: 'lockstep lock release --force', age_s: expect.any(Number), pid: expect.any(Number) });

    const status = await cli(['status']);
    expect(status.status).toBe(1);
    expect(status.stdout).not.toMatch(/^PARITY/m);
    expect(status.stdout).toMatch(/NOT IN PARITY: .*ssh-1 is draining in the proxy under the STALE lock of \S+@\S+ pid \d+/);

    // The way back the items name: break the stale lock, then repair.
    const released = await cli(['lock', 'release', '--force']);
    expect(released.status).toBe(0);
    const repaired = await cli(['drift', '--repair']);
    expect(repaired.stdout).toContain('ssh-1: repaired');
    expect(repaired.status).toBe(0);
    expect((await proxyClientFromInventory(fleet.inventory).listInstances()).map((i) => i.state)).toEqual(['enabled', 'enabled', 'enabled']);
    expect((await cli(['drift'])).status).toBe(0);
  });

  it('drift --repair while a LIVE deploy holds the lock: reports the holder and exits (no SSH connection left open)', async () => {
    await breakLocks(fleet.inventory, { force: true }); // whatever the test before left (only stale locks are broken)
    // A live lock: taken by this (running) process, on this machine.
    const locker = openFleet(fleet.inventory);
    const holder = newLockHolder(good1, 'live deploy (test)');
    await lockFleet(locker, holder);
    const { manifest } = loadLocalRelease(fleet.inventory, good1);
    const publicFile = manifest.files.find((f) => f.path.startsWith('public/'))!.path;
    appendFileSync(join(fleet.ssh.host('ssh-3').deployTo, 'releases', good1, publicFile), 'x');
    try {
      const r = await cli(['drift', '--repair'], 60_000);
      expect(r.signal).toBeNull(); // not killed at the bound: it exited by itself
      expect(r.status).toBe(3);
      expect(r.stdout).toMatch(/ssh-3: NOT REPAIRED: not repaired: instance ssh-3 is locked by/);
      expect(r.stdout).not.toContain('stale-lock');
    } finally {
      await unlockFleet(locker, String(holder.token));
      await locker.close();
    }
    const fixed = await cli(['drift', '--repair']);
    expect({ status: fixed.status, stdout: fixed.stdout }).toMatchObject({ status: 0 });
  });
});
