// The remote command builders run here through bash against real directories: the same text
// an SSH host would run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as cmd from '../../deployer/remote/commands.ts';
import { layoutOf } from '../../deployer/remote/layout.ts';
import { diffTree, parseHashTree } from '../../deployer/remote/parse.ts';
import { shq } from '../../deployer/transport/shell.ts';

function sh(command: string): { code: number | null; stdout: string } {
  const r = spawnSync('bash', ['-c', command], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout };
}

describe('remote command builders', () => {
  it('shq keeps hostile values as one word', () => {
    const v = `a b'c"$(touch /tmp/pwned-lockstep)`;
    expect(execFileSync('bash', ['-c', `printf %s ${shq(v)}`], { encoding: 'utf8' })).toBe(v);
    expect(existsSync('/tmp/pwned-lockstep')).toBe(false);
  });

  it('switchCurrent replaces the link atomically and relatively', () => {
    const root = mkdtempSync(join(tmpdir(), 'layout '));
    const layout = layoutOf(root);
    mkdirSync(join(root, 'releases/20261130T0800Z-aaaaaaaa'), { recursive: true });
    mkdirSync(join(root, 'releases/20261130T0900Z-bbbbbbbb'), { recursive: true });
    expect(sh(cmd.switchCurrent(layout, '20261130T0800Z-aaaaaaaa')).code).toBe(0);
    expect(readlinkSync(join(root, 'current'))).toBe('releases/20261130T0800Z-aaaaaaaa');
    expect(sh(cmd.switchCurrent(layout, '20261130T0900Z-bbbbbbbb')).code).toBe(0);
    expect(readlinkSync(join(root, 'current'))).toBe('releases/20261130T0900Z-bbbbbbbb');
    expect(sh(cmd.readCurrent(layout)).stdout.trim()).toBe('releases/20261130T0900Z-bbbbbbbb');
    expect(() => cmd.switchCurrent(layout, '../../etc')).toThrow(/not a release id/);
  });

  it('the lock is exclusive and only its owner token releases it', () => {
    const layout = layoutOf(mkdtempSync(join(tmpdir(), 'lock-')));
    expect(sh(cmd.acquireLock(layout, { token: 't1', user: 'ann' })).code).toBe(0);
    const second = sh(cmd.acquireLock(layout, { token: 't2', user: 'bob' }));
    expect(second.code).toBe(20);
    expect(JSON.parse(second.stdout)).toMatchObject({ token: 't1', user: 'ann' });
    // A heartbeat from the wrong token changes nothing; from the owner it rewrites the holder.
    sh(cmd.refreshLock(layout, { token: 't2', user: 'bob', heartbeat: 'x' }));
    expect(readFileSync(join(layout.lock, 'holder.json'), 'utf8')).not.toContain('heartbeat');
    sh(cmd.refreshLock(layout, { token: 't1', user: 'ann', heartbeat: '2026-11-30T10:00:00.000Z' }));
    expect(JSON.parse(readFileSync(join(layout.lock, 'holder.json'), 'utf8'))).toMatchObject({ token: 't1', heartbeat: '2026-11-30T10:00:00.000Z' });
    sh(cmd.releaseLock(layout, 't2'));
    expect(existsSync(layout.lock)).toBe(true);
    sh(cmd.releaseLock(layout, 't1'));
    expect(existsSync(layout.lock)).toBe(false);
  });

  it('hashTree lists files with size, mode and sha256, skipping manifest.json and symlinks', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tree-'));
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a/x.js'), 'hi\n', { mode: 0o755 });
    writeFileSync(join(dir, 'b c.txt'), 'yo\n');
    writeFileSync(join(dir, 'manifest.json'), '{}');
    execFileSync('ln', ['-s', tmpdir(), join(dir, 'data')]);
    const files = parseHashTree(sh(cmd.hashTree(dir)).stdout);
    expect(files).toEqual([
      { path: 'a/x.js', size: 3, mode: '755', sha256: '98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4' },
      { path: 'b c.txt', size: 3, mode: '644', sha256: 'ebe95d10cc11e27bd8d4d1ce91bc725665ddbaa6ca2498ef38a88a58ad48cdb4' },
    ]);
    const edited = files.map((f) => (f.path === 'b c.txt' ? { ...f, sha256: '0'.repeat(64) } : f));
    expect(diffTree(edited, files)).toEqual({
      missing: [],
      added: [],
      changed: [{ path: 'b c.txt', expected: '0'.repeat(64), actual: files[1]!.sha256, what: 'content' }],
    });
    expect(diffTree(files.slice(0, 1), files).added).toEqual(['b c.txt']);
    expect(diffTree(files, files.slice(1)).missing).toEqual(['a/x.js']);
  });
});

describe('lock staleness', () => {
  it('judges by the heartbeat when there is one, else by the time taken; a dead local pid is stale', async () => {
    const { judgeHolder } = await import('../../deployer/fleet/lock.ts');
    const now = Date.parse('2026-11-30T12:00:00Z');
    const hour = 3_600_000;
    const old = { time: '2026-11-30T09:00:00Z', machine: 'elsewhere', pid: 1 };
    expect(judgeHolder(old, now, hour, 'here').stale).toBe(true);
    expect(judgeHolder({ ...old, heartbeat: '2026-11-30T11:59:00Z' }, now, hour, 'here').stale).toBe(false);
    expect(judgeHolder({ time: '2026-11-30T11:59:00Z', machine: 'here', pid: 2 ** 22 + 12345 }, now, hour, 'here')).toMatchObject({ stale: true });
    expect(judgeHolder({ time: '2026-11-30T11:59:00Z', machine: 'here', pid: process.pid }, now, hour, 'here').stale).toBe(false);
  });
});
