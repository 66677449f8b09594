// Bad input and failures on real sshd hosts: each leaves the fleet as it was and says so.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease } from '../../deployer/build/build.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { createTransport } from '../../deployer/transport/index.ts';
import type { Transport } from '../../deployer/transport/types.ts';
import { currentOnDisk, repoRoot, startE2eFleet, type E2eFleet } from './support.ts';

let fleet: E2eFleet;
let release: string;

beforeAll(async () => {
  // No proxy runs for this fleet (its inventory has a proxy section): CLI deploys say --no-proxy.
  fleet = await startE2eFleet(3, '127.0.0.21', { proxy: false });
  release = (await buildRelease(fleet.inventory)).release;
});
afterAll(async () => {
  await fleet?.stop();
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', fleet.inventory.file], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('deploy failures leave the fleet unchanged', () => {
  it('an unreachable instance fails preflight: exit 3 naming it, no instance changed', async () => {
    await fleet.ssh.stopHost('ssh-2');
    try {
      const r = cli(['deploy', '--release', release, '--no-proxy']);
      expect(r.status).toBe(3);
      expect(r.stdout).toContain('FAILED in phase preflight');
      expect(r.stdout).toMatch(/ssh-2: [^\n]*unreachable/);
      expect(r.stdout).toContain('no instance was changed');
      expect(r.stderr).not.toMatch(/\n\s+at /);
      for (const h of fleet.ssh.hosts) {
        expect(currentOnDisk(h.deployTo)).toBeNull();
        expect(existsSync(join(h.deployTo, 'releases'))).toBe(false);
      }
    } finally {
      await fleet.ssh.startHost('ssh-2');
    }
  });

  it('an artifact corrupted in transit is never unpacked: uploaded again once, then the deploy names host and both hashes', async () => {
    const puts: string[] = [];
    const corrupting = (t: Transport): Transport =>
      Object.assign(Object.create(Object.getPrototypeOf(t)) as Transport, t, {
        async putFile(local: string, remote: string) {
          if (!remote.endsWith('.tar.gz.part') || t.instance !== 'ssh-3') return t.putFile(local, remote);
          puts.push(remote);
          const bad = join(mkdtempSync(join(tmpdir(), 'corrupt-')), 'artifact.tar.gz');
          copyFileSync(local, bad);
          const bytes = readFileSync(bad);
          bytes[bytes.length >> 1]! ^= 0xff;
          writeFileSync(bad, bytes);
          return t.putFile(bad, remote);
        },
      });
    const r = await deploy(fleet.inventory, {
      release,
      factory: (i, inv) => corrupting(createTransport(i, inv)),
    });
    expect(r.ok).toBe(false);
    expect(r.phase).toBe('prepare');
    expect(puts).toHaveLength(2);
    const row = r.instances.find((i) => i.instance === 'ssh-3')!;
    expect(row.error).toMatch(/checksum mismatch on ssh-3 .*expected sha256 [0-9a-f]{64}, host has [0-9a-f]{64}/);
    expect(r.state).toContain('no instance was activated');
    const ssh3 = fleet.ssh.host('ssh-3').deployTo;
    expect(existsSync(join(ssh3, 'releases', release))).toBe(false);
    expect(existsSync(join(ssh3, 'artifacts'))).toBe(true);
    for (const h of fleet.ssh.hosts) expect(currentOnDisk(h.deployTo)).toBeNull();
  });

  it('a changed host key is refused before authentication, naming host and both fingerprints', async () => {
    const before = fleet.ssh.host('ssh-1').hostKeyFingerprint;
    const after = await fleet.ssh.replaceHostKey('ssh-1');
    const r = cli(['deploy', '--release', release, '--no-proxy']);
    expect(r.status).toBe(3);
    expect(r.stdout).toContain('host key for [127.0.0.21]:');
    expect(r.stdout).toContain(before);
    expect(r.stdout).toContain(after);
    expect(r.stdout).toContain('no instance was changed');
    // The refusal came before any authentication attempt reached sshd.
    const log = readFileSync(fleet.ssh.host('ssh-1').logFile, 'utf8');
    expect(log).not.toMatch(/Accepted publickey/);
    for (const h of fleet.ssh.hosts) expect(currentOnDisk(h.deployTo)).toBeNull();
  });
});

describe('lockstep build', () => {
  it('--json twice from an unchanged tree prints the same digest and release', () => {
    const a = cli(['build', '--json']);
    const b = cli(['build', '--json']);
    expect(a.status).toBe(0);
    const ja = JSON.parse(a.stdout) as { release: string; digest: string; artifact: string; files: number; bytes: number; source: { pinned: boolean } };
    const jb = JSON.parse(b.stdout) as typeof ja;
    expect(jb.digest).toBe(ja.digest);
    // This inventory lives outside any git checkout, so the release id carries the build time
    // (unpinned) and may tick over a minute between the two builds; digest and bytes may not.
    expect(ja.source.pinned).toBe(false);
    expect(jb.release.slice(-8)).toBe(ja.release.slice(-8));
    expect(ja.files).toBeGreaterThan(3);
    expect(readFileSync(jb.artifact).equals(readFileSync(ja.artifact))).toBe(true);
  });
});
