// The worst day over SSH (issue 13, "SSH and transfer faults"): hosts that hang, uploads that
// stall, drop or are interrupted, sshd session limits, a truncated archive, remote commands killed
// by a signal. One fleet of real sshd hosts (127.0.16.1-3) with the real app and the real proxy,
// reused by every case; each case restores the hosts it broke. Every deploy case checks the
// issue's invariant: no instance activated an unverified release, the fleet is on one release (or
// the output says who runs what), the lock is released (or the output names the host keeping it),
// the exit code is non-zero, and the command ended (bounded by the test's own timeout).
//
// Hosts: ssh-1 and ssh-2 run sshd with MaxSessions 3, ssh-3 with MaxSessions 1, so every deploy
// here also proves channels are bounded per connection and queued. SFTP goes through a wrapper
// around OpenSSH's sftp-server that a case switches per host with the file `<hostDir>/sftp-fault`:
// `stall` (the server stops getting requests after 64 KiB: WRITEs go unanswered while the
// connection stays up) or `drop-once` (the next SFTP session ends after 64 KiB).
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteCommandError } from '../../config/errors.ts';
import { InstanceOps } from '../../deployer/fleet/instance.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { createTransport } from '../../deployer/transport/index.ts';
import type { Transport } from '../../deployer/transport/types.ts';
import { currentOnDisk, makeReleases, repoRoot, startE2eFleet, type E2eFleet } from './support.ts';

const BASE = '127.0.16.1';
/** Bounds in the test inventory: short, so cases stay fast, yet long enough for a loaded machine. */
const KEEPALIVE_MS = 1_000;
const KEEPALIVE_COUNT = 3;
const CONNECT_MS = 5_000;
const NO_PROGRESS_MS = 1_500;
/** Any CLI run here is killed after this (a hang fails the case instead of the whole file). */
const RUN_BOUND_MS = 60_000;

let fleet: E2eFleet;
let releases: string[];
/** An inventory like the fleet's but with a 60 s no-progress bound: an upload stays stalled until the case acts. */
let patientInventory: string;
const wrapperDir = mkdtempSync(join(tmpdir(), 'lockstep-sftp-wrap-'));
const sftpWrapper = join(wrapperDir, 'sftp-fault-wrapper');

beforeAll(async () => {
  writeFileSync(
    sftpWrapper,
    [
      '#!/bin/sh',
      'f="$HOME/sftp-fault"',
      'mode=$(cat "$f" 2>/dev/null)',
      'case "$mode" in',
      '  stall) { dd bs=4096 count=65536 iflag=count_bytes status=none; exec sleep 60; } | /usr/lib/openssh/sftp-server ;;',
      '  drop-once) rm -f "$f"; dd bs=4096 count=65536 iflag=count_bytes status=none | /usr/lib/openssh/sftp-server ;;',
      '  *) exec /usr/lib/openssh/sftp-server ;;',
      'esac',
      '',
    ].join('\n'),
  );
  chmodSync(sftpWrapper, 0o755);
  fleet = await startE2eFleet(3, BASE, {
    proxyAddress: '127.0.16.100',
    deploy: { upload_no_progress_ms: NO_PROGRESS_MS, upload_timeout_ms: 30_000, probe: { enabled: false }, batch_size: '100%' },
    sshInventory: { connect_timeout_ms: CONNECT_MS, keepalive_interval_ms: KEEPALIVE_MS, keepalive_count_max: KEEPALIVE_COUNT },
    sshd: { sftpCommand: sftpWrapper, sshdConfig: ['MaxSessions 3', 'Match LocalAddress 127.0.16.3', '  MaxSessions 1'] },
  });
  releases = await makeReleases(fleet.inventory, ['good', 'good', 'good', 'good']);
  const raw = parse(readFileSync(fleet.inventory.file, 'utf8')) as { deploy: Record<string, unknown> };
  raw.deploy.upload_no_progress_ms = 60_000;
  patientInventory = join(fleet.ssh.dir, 'inventory-patient.yaml');
  writeFileSync(patientInventory, stringify(raw));
}, 120_000);

afterAll(async () => {
  await fleet?.stop();
  rmSync(wrapperDir, { recursive: true, force: true });
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Start the CLI; `done` settles when it exits (SIGKILLed after RUN_BOUND_MS). */
function start(args: string[], inventory = fleet.inventory.file): { child: ReturnType<typeof spawn>; out: () => string; done: Promise<Run> } {
  const child = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', inventory], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), RUN_BOUND_MS);
  const done = new Promise<Run>((resolve) =>
    child.on('exit', (status) => {
      clearTimeout(killer);
      resolve({ status, stdout, stderr });
    }),
  );
  return { child, out: () => stdout + stderr, done };
}

function cli(args: string[], inventory?: string): Promise<Run> {
  return start(args, inventory).done;
}

/** Wait for `cond` (polled every 50 ms, at most `ms`). */
async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const deployTo = (name: string) => fleet.ssh.host(name).deployTo;
const setFault = (name: string, mode: 'stall' | 'drop-once' | null) => {
  const file = join(fleet.ssh.host(name).hostDir, 'sftp-fault');
  if (mode) writeFileSync(file, `${mode}\n`);
  else rmSync(file, { force: true });
};
const lockHeld = (name: string) => existsSync(join(deployTo(name), '.lockstep', 'lock'));
/** Partial uploads (`.<name>.tmp-*`) left in a host's artifacts dir. */
const tmpFiles = (name: string) => {
  const dir = join(deployTo(name), 'artifacts');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.includes('.tmp-')) : [];
};
const names = ['ssh-1', 'ssh-2', 'ssh-3'];

/** The invariant after a failed deploy: every host still on `release`, no lock, non-zero exit. */
function expectUnchanged(r: Run, release: string): void {
  expect(r.status, r.stdout + r.stderr).not.toBe(0);
  expect(r.status).not.toBeNull(); // it ended by itself, not by the test's SIGKILL
  for (const n of names) {
    expect(currentOnDisk(deployTo(n))).toBe(`releases/${release}`);
    expect(lockHeld(n)).toBe(false);
  }
}

describe('worst day over SSH', () => {
  it('a deploy succeeds on hosts limited to MaxSessions 3 and 1 (channels queued per connection, SFTP closed after each transfer)', async () => {
    const r = await cli(['deploy', '--no-verify', '--release', releases[0]!]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const n of names) {
      expect(currentOnDisk(deployTo(n))).toBe(`releases/${releases[0]}`);
      expect(lockHeld(n)).toBe(false);
    }
  });

  it('an upload that stalls (SFTP stops answering, connection up): no-progress timeout, one retry, then a failure naming host and step; partial file removed; other hosts not held up', async () => {
    setFault('ssh-2', 'stall');
    try {
      const t0 = Date.now();
      const r = await cli(['deploy', '--no-verify', '--release', releases[1]!]);
      console.log(`measured: deploy with a stalled upload ended after ${Date.now() - t0} ms (no-progress bound ${NO_PROGRESS_MS} ms, one retry)`);
      const out = r.stdout + r.stderr;
      expectUnchanged(r, releases[0]!);
      expect(out).toContain('FAILED in phase prepare');
      expect(out).toMatch(/\[ssh-2\] upload failed, retrying once: .*stalled: no progress for 1500 ms/);
      expect(out).toMatch(/ssh-2: upload artifact: upload to ssh-2 .*stalled/);
      expect(out).toMatch(/ssh-2 .*FAILED/);
      expect(out).not.toMatch(/ssh-2 .*skipped \(on host\)/);
      expect(tmpFiles('ssh-2')).toEqual([]);
      // The other hosts finished their upload (and its on-host verification) meanwhile.
      for (const n of ['ssh-1', 'ssh-3']) expect(out).toMatch(new RegExp(`\\[${n}\\] uploaded \\d+ bytes, sha256 verified on host`));
    } finally {
      setFault('ssh-2', null);
    }
  });

  it('an upload dropped mid-way is retried once and the deploy succeeds', async () => {
    setFault('ssh-2', 'drop-once');
    try {
      const r = await cli(['deploy', '--no-verify', '--release', releases[1]!]);
      const out = r.stdout + r.stderr;
      expect(r.status, out).toBe(0);
      expect(out).toMatch(/\[ssh-2\] upload failed, retrying once/);
      for (const n of names) expect(currentOnDisk(deployTo(n))).toBe(`releases/${releases[1]}`);
      expect(tmpFiles('ssh-2')).toEqual([]);
    } finally {
      setFault('ssh-2', null);
    }
  });

  it('SIGTERM during a stalled upload aborts the transfer: the deploy ends, partial file removed, locks released', async () => {
    setFault('ssh-2', 'stall');
    let running = { exitCode: 0, kill: (_s: string) => true } as { exitCode: number | null; kill(s: NodeJS.Signals): boolean };
    try {
      const run = start(['deploy', '--no-verify', '--release', releases[2]!], patientInventory);
      running = run.child;
      // Stalled: the other hosts are done uploading and ssh-2's partial file stopped at 64 KiB or less.
      await until(() => /\[ssh-1\] uploaded/.test(run.out()) && /\[ssh-3\] uploaded/.test(run.out()) && tmpFiles('ssh-2').length > 0, 'the upload to ssh-2 to stall');
      run.child.kill('SIGTERM');
      const signalledAt = Date.now();
      const r = await run.done;
      console.log(`measured: deploy ended ${Date.now() - signalledAt} ms after SIGTERM during a stalled upload`);
      expectUnchanged(r, releases[1]!);
      expect(r.stdout + r.stderr).toMatch(/upload to ssh-2 .*interrupted \(signal\)/);
      await until(() => tmpFiles('ssh-2').length === 0, 'the partial file on ssh-2 to be gone', 5_000);
    } finally {
      setFault('ssh-2', null);
      if (running.exitCode === null) running.kill('SIGKILL'); // only when the case failed early
    }
  });

  it('a hung host (sshd SIGSTOPped) before the deploy: preflight fails within the connect bound naming it, nothing changed', async () => {
    fleet.ssh.freezeHost('ssh-3');
    let r: Run;
    try {
      const t0 = Date.now();
      r = await cli(['deploy', '--no-verify', '--release', releases[2]!]);
      console.log(`measured: deploy with ssh-3 hung ended after ${Date.now() - t0} ms (connect bound ${CONNECT_MS} ms)`);
    } finally {
      fleet.ssh.thawHost('ssh-3');
    }
    expectUnchanged(r, releases[1]!);
    expect(r.stdout).toContain('FAILED in phase preflight');
    expect(r.stdout).toMatch(new RegExp(`ssh-3: .*no SSH answer from .*127\\.0\\.16\\.3:\\d+ within ${CONNECT_MS} ms`));
    expect(r.stdout).toContain('no instance was changed');
  });

  it('a host that hangs during its upload: lost after the keepalive bound, named, the lock it keeps is said; `status` shows it; `lock release --force` recovers', async () => {
    setFault('ssh-2', 'stall');
    const run = start(['deploy', '--no-verify', '--release', releases[2]!], patientInventory);
    let r: Run;
    try {
      // The other hosts have this artifact already (the interrupted deploy above uploaded it).
      await until(() => tmpFiles('ssh-2').length > 0, 'the upload to ssh-2 to start');
      fleet.ssh.freezeHost('ssh-2');
      const frozenAt = Date.now();
      r = await run.done;
      console.log(`measured: deploy ended ${Date.now() - frozenAt} ms after ssh-2 froze mid-upload`);
    } finally {
      fleet.ssh.thawHost('ssh-2');
      setFault('ssh-2', null);
    }
    const out = r.stdout + r.stderr;
    expect(r.status, out).not.toBe(0);
    expect(r.status).not.toBeNull();
    expect(out).toMatch(/ssh-2: upload artifact: instance ssh-2 is unreachable: .*(keepalives|no SSH answer)/);
    expect(out).toMatch(/\[ssh-2\] LOCK STILL HELD by this run/);
    for (const n of names) expect(currentOnDisk(deployTo(n))).toBe(`releases/${releases[1]}`);
    expect(lockHeld('ssh-1')).toBe(false);
    expect(lockHeld('ssh-3')).toBe(false);
    expect(lockHeld('ssh-2')).toBe(true);
    const status = await cli(['status']);
    expect(status.stdout).toMatch(/ssh-2[^\n]*@/); // the lock holder (user@machine) is on ssh-2's row
    const release = await cli(['lock', 'release', '--force']);
    expect(release.status, release.stdout + release.stderr).toBe(0);
    for (const n of names) expect(lockHeld(n)).toBe(false);
  });

  it('an archive truncated on the host while the upload reports complete: caught by sha256 on the host, both hashes shown, nothing unpacked', async () => {
    const truncating = (t: Transport): Transport =>
      Object.assign(Object.create(Object.getPrototypeOf(t)) as Transport, t, {
        async putFile(local: string, remote: string) {
          await t.putFile(local, remote);
          if (remote.endsWith('.tar.gz.part') && t.instance === 'ssh-1') {
            const size = statSync(local).size;
            await t.exec(`truncate -s ${size >> 1} '${remote}'`);
          }
        },
      });
    // A release no host has yet (the interrupted deploys above left releases[2]'s artifact on some).
    const r = await deploy(fleet.inventory, { release: releases[3]!, factory: (i, inv) => truncating(createTransport(i, inv)) });
    expect(r.ok).toBe(false);
    const row = r.instances.find((i) => i.instance === 'ssh-1')!;
    expect(row.error).toMatch(/upload artifact: checksum mismatch on ssh-1 .*expected sha256 [0-9a-f]{64}, host has [0-9a-f]{64}/);
    expect(existsSync(join(deployTo('ssh-1'), 'releases', releases[3]!))).toBe(false);
    for (const n of names) {
      expect(currentOnDisk(deployTo(n))).toBe(`releases/${releases[1]}`);
      expect(lockHeld(n)).toBe(false);
    }
  });

  it('remote commands: killed by a signal names the signal; output on stderr alone is no failure; errors show a short command', async () => {
    const t = createTransport(fleet.inventory.instances[0]!, fleet.inventory);
    try {
      const killed = await t.exec('kill -KILL $$');
      expect(killed).toMatchObject({ code: null, signal: 'SIGKILL' });
      const ops = new InstanceOps(fleet.inventory.instances[0]!, t, fleet.inventory);
      const long = `kill -TERM $$ # ${'x'.repeat(1500)}`;
      const err = await ops.run(long).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RemoteCommandError);
      expect((err as Error).message).toMatch(/^on ssh-1: `kill -TERM \$\$ # x+\.\.\.` was killed by SIGTERM$/);
      expect((err as Error).message.length).toBeLessThan(200);
      expect(await ops.run('echo only-a-warning >&2; echo ok')).toBe('ok\n');
    } finally {
      await t.close();
    }
  });
});

