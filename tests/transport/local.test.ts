// LocalTransport: the same contract as SSH, on this machine.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalTransport } from '../../deployer/transport/local.ts';
import { succeeded } from '../../deployer/transport/types.ts';

let dir: string;
const t = new LocalTransport('local-1');

beforeAll(() => {
  dir = mkdtempSync(join(os.tmpdir(), 'lockstep-local-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Running (a zombie waiting for a reaper counts as dead: it runs nothing). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('LocalTransport.exec', () => {
  it('returns exit codes exactly and never throws for a failure', async () => {
    const ok = await t.exec('echo out; echo err >&2');
    expect(ok).toEqual({ code: 0, signal: null, stdout: 'out\n', stderr: 'err\n' });
    expect(succeeded(ok)).toBe(true);
    const bad = await t.exec('exit 7');
    expect(bad).toMatchObject({ code: 7, signal: null });
    expect(succeeded(bad)).toBe(false);
  });

  it('reports a signal death as code null + signal', async () => {
    const r = await t.exec('kill -KILL $$');
    expect(r).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(succeeded(r)).toBe(false);
  });

  it('runs with bash semantics', async () => {
    const r = await t.exec('a=(x y z); echo "${#a[@]} ${BASH_VERSION%%.*}"');
    expect(r.stdout).toMatch(/^3 [0-9]+\n$/);
  });

  it('applies cwd and env, including values with quotes, spaces, $ and newlines', async () => {
    const cwd = join(dir, "dir with 'quote' and space");
    mkdirSync(cwd);
    const value = `it's a "test" $HOME \`id\` \\ \nline2`;
    const r = await t.exec('pwd; printf %s "$LOCKSTEP_X"', { cwd, env: { LOCKSTEP_X: value } });
    expect(r).toMatchObject({ code: 0, stdout: `${cwd}\n${value}` });
  });

  it('fails (code 1, no command run) when cwd does not exist', async () => {
    const marker = join(dir, 'ran');
    const r = await t.exec(`touch ${marker}`, { cwd: join(dir, 'missing') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/missing/);
    expect(existsSync(marker)).toBe(false);
  });

  it('rejects env names that are not shell identifiers', async () => {
    await expect(t.exec('true', { env: { 'A B': 'x' } })).rejects.toThrow(/invalid environment variable name/);
  });

  it('on timeout stops the whole process group with SIGTERM', async () => {
    const pidFile = join(dir, 'bg.pid');
    const r = await t.exec(`sleep 60 & echo $! > ${pidFile}; wait`, { timeoutMs: 300 });
    expect(r).toMatchObject({ code: null, signal: 'SIGTERM' });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // The background sleep got the same SIGTERM; give the kernel a bounded moment to reap it.
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((res) => setTimeout(res, 20));
    expect(alive(pid)).toBe(false);
  });

  it('a command that ignores SIGTERM gets SIGKILL after the grace period', async () => {
    const r = await t.exec("trap '' TERM; sleep 30", { timeoutMs: 200 });
    expect(r).toMatchObject({ code: null, signal: 'SIGKILL' });
  });

  it('a command with a timeout can `wait` for its own background jobs', async () => {
    const r = await t.exec('sleep 0.3 & wait; echo done', { timeoutMs: 10_000 });
    expect(r).toEqual({ code: 0, signal: null, stdout: 'done\n', stderr: '' });
  });

  it('keeps multi-byte UTF-8 intact across output chunks', async () => {
    const r = await t.exec(`for i in $(seq 1 50000); do printf 'é€'; done`);
    expect(r.stdout).toBe('é€'.repeat(50000));
  });
});

describe('LocalTransport files', () => {
  it('putFile copies atomically (no temp file left), keeps the mode, overwrites; readFile reads back', async () => {
    const src = join(dir, 'src.sh');
    writeFileSync(src, '#!/bin/sh\necho héllo\n');
    chmodSync(src, 0o755);
    const target = join(dir, 'out');
    mkdirSync(target);
    writeFileSync(join(target, 'app.sh'), 'old');
    await t.putFile(src, join(target, 'app.sh'));
    expect(await t.readFile(join(target, 'app.sh'))).toBe('#!/bin/sh\necho héllo\n');
    expect(statSync(join(target, 'app.sh')).mode & 0o777).toBe(0o755);
    expect(readdirSync(target)).toEqual(['app.sh']);
  });

  it('putFile into a missing directory and readFile of a missing file throw ENOENT', async () => {
    const src = join(dir, 'src.txt');
    writeFileSync(src, 'x');
    await expect(t.putFile(src, join(dir, 'nope', 'f'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(t.readFile(join(dir, 'nope.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
