// Issue 12 items 4, 8, 9 at unit level: the remote command builders run here through bash
// against real directories (the same text an SSH host runs); retention and history decisions
// are pure functions over real-shaped data.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as cmd from '../../deployer/remote/commands.ts';
import { layoutOf } from '../../deployer/remote/layout.ts';
import { parseInventory } from '../../config/inventory.ts';
import { ConfigError } from '../../config/errors.ts';
import { decideRetention } from '../../deployer/fleet/retention.ts';
import { decideRollbackTarget, type InstanceReleases } from '../../deployer/fleet/releases.ts';
import { parseDiskSpace, spaceNeeded } from '../../deployer/fleet/disk.ts';
import { completeEntry, historyNote, shortSource, type HistoryEntry } from '../../deployer/fleet/history.ts';
import type { Manifest } from '../../deployer/build/manifest.ts';

function sh(command: string, options: { cwd?: string } = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', command], { encoding: 'utf8', cwd: options.cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const R = (n: number) => `20261130T${String(800 + n).padStart(4, '0')}Z-${String(n).repeat(8).slice(0, 8)}`;

describe('service commands get the environment for any shell syntax (item 8)', () => {
  const root = mkdtempSync(join(tmpdir(), 'svc-'));
  const layout = layoutOf(root);
  mkdirSync(join(root, 'releases', R(1)), { recursive: true });
  execFileSync('ln', ['-s', `releases/${R(1)}`, join(root, 'current')]);
  const env = { HOST: '127.0.0.9', PORT: '4321', LOCKSTEP_INSTANCE: "web 1's" };

  it('an if/then/fi followed by another command: no syntax error, both parts see the env', () => {
    const r = sh(cmd.serviceCommand(layout, 'if [ -n "$PORT" ]; then echo "if:$HOST:$PORT"; fi; echo "after:$LOCKSTEP_INSTANCE:$(pwd -P)"', env));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`if:127.0.0.9:4321\nafter:web 1's:${join(root, 'releases', R(1))}\n`);
  });

  it('`stop; start` (and child processes) all get the env, not only the first command', () => {
    const r = sh(cmd.serviceCommand(layout, `echo "stop:$HOST:$PORT"; bash -c 'echo "start:$HOST:$PORT:$LOCKSTEP_INSTANCE"'`, env));
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("stop:127.0.0.9:4321\nstart:127.0.0.9:4321:web 1's\n");
  });

  it('a missing current fails before the command runs', () => {
    const r = sh(cmd.serviceCommand(layoutOf(join(root, 'nowhere')), 'echo ran', env));
    expect(r.code).not.toBe(0);
    expect(r.stdout).not.toContain('ran');
  });
});

describe('switchCurrent temp link (item 8)', () => {
  it('expands $$: the temp link name carries the switching shell pid, not a literal "$$"', () => {
    const root = mkdtempSync(join(tmpdir(), 'switch-'));
    mkdirSync(join(root, 'releases', R(1)), { recursive: true });
    const text = cmd.switchCurrent(layoutOf(root), R(1));
    const r = spawnSync('bash', ['-xc', text], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/\.current-\d+/);
    expect(r.stderr).not.toContain('.current-$$');
    expect(readlinkSync(join(root, 'current'))).toBe(`releases/${R(1)}`);
    expect(readdirSync(root).filter((f) => f.startsWith('.current-'))).toEqual([]);
  });
});

describe('tar keeps the archive modes under any umask (item 8)', () => {
  it('a 644/755 archive unpacks as 644/755 for a non-root user with umask 027', () => {
    const base = mkdtempSync(join(tmpdir(), 'umask-'));
    const src = join(base, 'src');
    mkdirSync(join(src, 'bin'), { recursive: true });
    writeFileSync(join(src, 'a.txt'), 'a\n', { mode: 0o644 });
    writeFileSync(join(src, 'bin', 'run'), '#!/bin/sh\n', { mode: 0o755 });
    chmodSync(join(src, 'a.txt'), 0o644);
    chmodSync(join(src, 'bin', 'run'), 0o755);
    const root = join(base, 'deploy');
    const layout = layoutOf(root);
    const digest = 'a'.repeat(64);
    mkdirSync(layout.artifacts, { recursive: true });
    mkdirSync(layout.releases, { recursive: true });
    execFileSync('tar', ['-czf', join(layout.artifacts, `${digest}.tar.gz`), '-C', src, 'a.txt', 'bin/run']);
    const script = `umask 027; ${cmd.unpackToStaging(layout, R(1), digest)}`;
    // GNU tar applies the umask only for a non-root user: as root, run as nobody.
    if (process.getuid?.() === 0) {
      chmodSync(base, 0o755);
      for (const d of [root, layout.artifacts, layout.releases]) chownSync(d, 65534, 65534);
      const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'bash', '-c', script], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    } else expect(sh(script).code).toBe(0);
    const staging = cmd.stagingDir(layout, R(1));
    expect((statSync(join(staging, 'a.txt')).mode & 0o777).toString(8)).toBe('644');
    expect((statSync(join(staging, 'bin', 'run')).mode & 0o777).toString(8)).toBe('755');
  });
});

describe('shared_dirs in the inventory (item 8)', () => {
  const inv = (dirs: string) => `app:
  build: {command: "true", output: out}
  service: {start: a, stop: b, restart: c}
  shared_dirs: ${dirs}
instances:
  - {name: one, transport: local, deploy_to: fleet/one, app_port: 4001}
`;
  const error = (dirs: string): ConfigError => {
    try {
      parseInventory(inv(dirs), 'fleet.yaml');
    } catch (e) {
      if (e instanceof ConfigError) return e;
      throw e;
    }
    throw new Error(`expected shared_dirs ${dirs} to be refused`);
  };

  it.each([['[data, "."]', 'app.shared_dirs[1]'], ['[".."]', 'app.shared_dirs[0]'], ['["/var/data"]', 'app.shared_dirs[0]'], ['["a/../b"]', 'app.shared_dirs[0]'], ['["a//b"]', 'app.shared_dirs[0]']])(
    'refuses %s naming the field',
    (dirs, field) => {
      const e = error(dirs);
      expect(e.message).toContain(`fleet.yaml:4: field "${field}"`);
      expect(e.message).toMatch(/absolute|"\."|"\.\."/);
    },
  );

  it('accepts plain names and nested relative paths, and links a nested one', () => {
    const parsed = parseInventory(inv('[data, public/uploads, .cache]'), 'fleet.yaml');
    expect(parsed.app.shared_dirs).toEqual(['data', 'public/uploads', '.cache']);
    const root = mkdtempSync(join(tmpdir(), 'shared-'));
    const layout = layoutOf(root);
    mkdirSync(join(root, 'releases', R(1)), { recursive: true });
    expect(sh(cmd.prepareLayout(layout, parsed.app.shared_dirs)).code).toBe(0);
    expect(sh(cmd.linkShared(layout, R(1), parsed.app.shared_dirs)).code).toBe(0);
    expect(readlinkSync(join(root, 'releases', R(1), 'public/uploads'))).toBe(join(root, 'shared/public/uploads'));
    expect(() => cmd.linkShared(layout, R(1), ['..'])).toThrow(/not a plain relative shared dir/);
  });
});

describe('leftovers and free space (item 4)', () => {
  it('diskSpace reads free bytes and leftovers; removeLeftovers removes .part, .tmp-*, .staging-* and temp links only', () => {
    const root = mkdtempSync(join(tmpdir(), 'left-'));
    const layout = layoutOf(root);
    mkdirSync(join(layout.releases, R(1)), { recursive: true });
    mkdirSync(join(layout.releases, `.staging-${R(2)}`, 'server'), { recursive: true });
    writeFileSync(join(layout.releases, `.staging-${R(2)}`, 'server', 'big.bin'), Buffer.alloc(200_000));
    mkdirSync(layout.artifacts, { recursive: true });
    const digest = 'b'.repeat(64);
    writeFileSync(join(layout.artifacts, `${digest}.tar.gz`), 'kept');
    writeFileSync(join(layout.artifacts, `${'c'.repeat(64)}.tar.gz.part`), Buffer.alloc(100_000));
    writeFileSync(join(layout.artifacts, 'x.tar.gz.tmp-123'), 'tmp');
    execFileSync('ln', ['-s', `releases/${R(1)}`, join(root, '.current-999')]);
    const disk = parseDiskSpace(sh(cmd.diskSpace(layout, R(1), digest)).stdout);
    expect(disk.freeBytes).toBeGreaterThan(0);
    expect(disk.leftoverBytes).toBeGreaterThanOrEqual(300_000);
    expect(disk.artifactBytes).toBe(4);
    expect(disk.releaseExists).toBe(true);
    const removed = sh(cmd.removeLeftovers(layout)).stdout.split('\n').filter(Boolean);
    expect(removed).toHaveLength(4);
    expect(readdirSync(layout.artifacts)).toEqual([`${digest}.tar.gz`]);
    expect(readdirSync(layout.releases)).toEqual([R(1)]);
    expect(existsSync(join(root, '.current-999'))).toBe(false);
    expect(parseDiskSpace(sh(cmd.diskSpace(layout, R(2), digest)).stdout)).toMatchObject({ leftoverBytes: 0, releaseExists: false });
    // A deploy_to that does not exist yet: free space of its nearest existing ancestor.
    expect(parseDiskSpace(sh(cmd.diskSpace(layoutOf(join(root, 'not/yet')), R(1), digest)).stdout)).toMatchObject({ artifactBytes: null, releaseExists: false });
  });

  it('spaceNeeded counts the artifact and the unpacked files (4 KiB blocks) unless present, plus the margin', () => {
    const manifest = { artifact: { bytes: 10_000 }, files: [{ size: 1 }, { size: 5000 }, { size: 0 }] } as unknown as Manifest;
    const disk = { freeBytes: 1, leftoverBytes: 0, artifactBytes: null, releaseExists: false };
    expect(spaceNeeded(manifest, disk, 100)).toEqual({ artifactBytes: 10_000, releaseBytes: 4096 + 8192 + 4096, marginBytes: 100, total: 10_000 + 16_384 + 100 });
    expect(spaceNeeded(manifest, { ...disk, artifactBytes: 10_000, releaseExists: true }, 0).total).toBe(0);
  });
});

describe('retention is one fleet decision (item 4)', () => {
  let clock = 0;
  const h = (event: HistoryEntry['event'], release: string, previous: string | null): HistoryEntry => ({
    time: new Date(Date.UTC(2026, 10, 30, 8, 0, clock++)).toISOString(),
    event,
    release,
    digest: 'd',
    previous,
    instance: 'i',
    user: 'u',
    machine: 'm',
  });

  it('a late-batch failure makes per-host views differ; the fleet still keeps one set, with the rollback target', () => {
    // g1, g2 everywhere; g3 activated on a and b, failed on c (last batch): a and b rolled back.
    const a = [h('activate', R(1), null), h('activate', R(2), R(1)), h('activate', R(3), R(2)), h('rollback', R(2), R(3)), h('activate', R(4), R(2))];
    const c = [h('activate', R(1), null), h('activate', R(2), R(1)), h('failed', R(3), R(2)), h('rollback', R(2), R(3)), h('activate', R(4), R(2))];
    const present = [R(1), R(2), R(3), R(4)];
    const infos: InstanceReleases[] = [
      { instance: 'a', current: R(4), present, history: a },
      { instance: 'b', current: R(4), present, history: a },
      { instance: 'c', current: R(4), present, history: c },
    ];
    const d = decideRetention(infos, 3, null);
    // R(3) failed on c: it goes first, on every instance (per-host pruning kept it on a and b and removed R(1) there).
    expect(d.remove).toEqual([R(3)]);
    expect(d.keep).toEqual([R(4), R(2), R(1)]);
    expect(d.protectedBy).toMatchObject({ [R(4)]: 'current on a', [R(2)]: 'rollback target' });
    expect(decideRollbackTarget(infos).target).toBe(R(2));
  });

  it('never removes current on any instance, the rollback target or the release being deployed, even past keep_releases', () => {
    const hist = [h('activate', R(1), null), h('activate', R(2), R(1)), h('activate', R(3), R(2))];
    const infos: InstanceReleases[] = [
      { instance: 'a', current: R(3), present: [R(1), R(2), R(3), R(5)], history: hist },
      // b is still on R(1) (mixed fleet): R(1) is current there.
      { instance: 'b', current: R(1), present: [R(1), R(2), R(3), R(5)], history: hist.slice(0, 1) },
    ];
    const d = decideRetention(infos, 1, R(5));
    expect(d.remove).toEqual([]);
    expect(Object.keys(d.protectedBy).sort()).toEqual([R(1), R(2), R(3), R(5)].sort());
  });

  it('removes the oldest by last activation anywhere in the fleet; never-activated count as oldest', () => {
    const hist = [h('activate', R(2), null), h('activate', R(1), R(2)), h('activate', R(3), R(1)), h('activate', R(4), R(3))];
    const infos: InstanceReleases[] = [
      { instance: 'a', current: R(4), present: [R(1), R(2), R(3), R(4), R(6)], history: hist },
      { instance: 'b', current: R(4), present: [R(1), R(2), R(4)], history: hist },
    ];
    // Target R(3) (newest earlier, present? no: not on b) -> R(1). Oldest: R(6) (never), then R(2).
    expect(decideRollbackTarget(infos).target).toBe(R(1));
    expect(decideRetention(infos, 3, null).remove).toEqual([R(6), R(2)]);
  });
});

describe('history entries an auditor can use (item 9)', () => {
  it('completes who, where, operation, message, outcome and source; failures carry error and hook', () => {
    const ok = completeEntry({ event: 'activate', release: R(1), digest: 'd', previous: null }, 'web-1', { operation: 'deploy', message: 'fix #42' }, { revision: 'abcdef0123456789', dirty: true });
    expect(ok).toMatchObject({ instance: 'web-1', operation: 'deploy', outcome: 'ok', message: 'fix #42', source: { revision: 'abcdef0123456789', dirty: true } });
    expect(ok.user).toBeTruthy();
    expect(ok.machine).toBeTruthy();
    expect(shortSource(ok.source)).toBe('abcdef012345-dirty');
    const failed = completeEntry({ event: 'failed', release: R(1), digest: 'd', previous: null, hook: 'before_activate', error: 'exit 3' }, 'web-1', { operation: 'deploy' }, null);
    expect(failed).toMatchObject({ outcome: 'failed', hook: 'before_activate', error: 'exit 3' });
    expect(failed).not.toHaveProperty('message');
    expect(historyNote(failed)).toBe('before_activate hook failed; error: exit 3');
    expect(JSON.parse(JSON.stringify(failed))).toEqual(failed);
  });

  it('appendHistory writes one parseable line even for hostile messages', () => {
    const layout = layoutOf(mkdtempSync(join(tmpdir(), 'hist-')));
    const entry = completeEntry({ event: 'activate', release: R(1), digest: 'd', previous: null }, 'w', { message: `it's "$(rm -rf /)"\nline2` }, null);
    expect(sh(cmd.appendHistory(layout, entry as unknown as Record<string, unknown>)).code).toBe(0);
    const lines = readFileSync(layout.history, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!).message).toBe(`it's "$(rm -rf /)"\nline2`);
  });
});
