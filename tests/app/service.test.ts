/**
 * bin/service against a Capistrano-style layout (releases/<id>, current -> releases/<id>,
 * shared/{data,logs,run}), run exactly as the deployer runs it: cwd `current`, env from the
 * app contract, output captured through pipes (as over SSH).
 */
import { cp, mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, freePort, run, tempDir, waitForHealthy } from './support.ts';

let deployTo: string;
let port: number;
let env: Record<string, string>;

async function switchCurrent(id: string): Promise<void> {
  // Same atomic switch the deployer does: new link, then rename over the old one.
  await symlink(join('releases', id), join(deployTo, 'current.new'));
  await rename(join(deployTo, 'current.new'), join(deployTo, 'current'));
}

/**
 * Run bin/service the way the deployer does. execFile resolves only when stdout and stderr are
 * closed, so a `start` that leaves the server holding the pipes would hang here until the
 * timeout kills it (and the test fails): that is the "must not keep an SSH channel open" check.
 */
async function service(verb: string): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run('bin/service', [verb], { cwd: join(deployTo, 'current'), env, timeout: 30_000 });
    return { code: 0, stdout };
  } catch (e) {
    const err = e as { code?: number; killed?: boolean; stdout?: string };
    if (err.killed) throw new Error(`bin/service ${verb} did not return (killed by timeout)`);
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '' };
  }
}

async function pidFile(): Promise<number> {
  return Number((await readFile(join(deployTo, 'shared', 'run', 'app.pid'), 'utf8')).trim());
}

/** True while `pid` runs; an exited process not yet reaped by its parent (a zombie) counts as gone. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

beforeAll(async () => {
  const built = await buildRelease();
  deployTo = await tempDir('deploy');
  for (const id of ['r1', 'r2']) {
    await cp(built, join(deployTo, 'releases', id), { recursive: true });
    await writeFile(join(deployTo, 'releases', id, 'manifest.json'), JSON.stringify({ release: id, digest: id.repeat(32) }));
  }
  for (const d of ['data', 'logs', 'run']) await mkdir(join(deployTo, 'shared', d), { recursive: true });
  await switchCurrent('r1');
  port = await freePort();
  env = {
    PATH: process.env.PATH ?? '',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATA_DIR: join(deployTo, 'shared', 'data'),
    LOG_DIR: join(deployTo, 'shared', 'logs'),
    RUN_DIR: join(deployTo, 'shared', 'run'),
    LOCKSTEP_INSTANCE: 'instance-t',
    LOCKSTEP_RELEASE_DIR: join(deployTo, 'current'),
  };
});

afterAll(async () => {
  if (deployTo) await service('stop');
});

describe('bin/service', () => {
  const url = () => `http://127.0.0.1:${port}`;

  it('start launches the server detached, from the real release directory, and returns', async () => {
    const started = await service('start');
    expect(started.code).toBe(0);
    const pid = await pidFile();
    expect(alive(pid)).toBe(true);
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ');
    // The resolved release path, not the `current` symlink that will later point elsewhere.
    expect(cmdline).toContain(join(deployTo, 'releases', 'r1', 'server', 'index.mjs'));
    await waitForHealthy(url(), null);
    expect(await (await fetch(`${url()}/version`)).json()).toMatchObject({ release: 'r1', instance: 'instance-t', pid });
    expect((await service('status')).code).toBe(0);
    expect(existsSync(join(deployTo, 'shared', 'logs', 'app.log'))).toBe(true);
  });

  it('start is idempotent while running', async () => {
    const pid = await pidFile();
    expect((await service('start')).code).toBe(0);
    expect(await pidFile()).toBe(pid);
  });

  it('restart after switching current runs the new release', async () => {
    const oldPid = await pidFile();
    await switchCurrent('r2');
    expect((await service('restart')).code).toBe(0);
    const newPid = await pidFile();
    expect(newPid).not.toBe(oldPid);
    expect(alive(oldPid)).toBe(false);
    await waitForHealthy(url(), null);
    expect(await (await fetch(`${url()}/version`)).json()).toMatchObject({ release: 'r2', pid: newPid });
  });

  it('stop ends the process; status then fails; stop again still succeeds', async () => {
    const pid = await pidFile();
    expect((await service('stop')).code).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(existsSync(join(deployTo, 'shared', 'run', 'app.pid'))).toBe(false);
    await expect(fetch(`${url()}/healthz`)).rejects.toThrow();
    expect((await service('status')).code).not.toBe(0);
    expect((await service('stop')).code).toBe(0);
  });

  it('stop never signals an unrelated process that reused the recorded pid', async () => {
    const stranger = spawn('sleep', ['300'], { stdio: 'ignore' });
    try {
      await writeFile(join(deployTo, 'shared', 'run', 'app.pid'), `${stranger.pid}\n`);
      expect((await service('status')).code).not.toBe(0);
      expect((await service('stop')).code).toBe(0);
      expect(alive(stranger.pid!)).toBe(true);
      expect(stranger.exitCode).toBeNull();
    } finally {
      stranger.kill('SIGKILL');
    }
  });

  it('start fails with a clear message when node cannot be found', async () => {
    const saved = env.NODE;
    env.NODE = 'no-such-node-binary';
    try {
      const res = await service('start');
      expect(res.code).toBe(1);
      expect(existsSync(join(deployTo, 'shared', 'run', 'app.pid'))).toBe(false);
    } finally {
      if (saved === undefined) delete env.NODE;
      else env.NODE = saved;
    }
  });

  it('rejects an unknown verb with exit 2', async () => {
    expect((await service('bounce')).code).toBe(2);
  });

  it('stop escalates to KILL when the server ignores TERM', async () => {
    // A stand-in server that ignores TERM, started by the real bin/service of the build.
    const stubRoot = await tempDir('stub');
    const release = join(stubRoot, 'releases', 'stub');
    await mkdir(join(release, 'server'), { recursive: true });
    await cp(join(deployTo, 'releases', 'r1', 'bin'), join(release, 'bin'), { recursive: true });
    // It says when its handler is in place: node catches TERM itself from the start (to reset the
    // terminal and exit), so a TERM that came earlier would end it without any KILL.
    await writeFile(
      join(release, 'server', 'index.mjs'),
      "import { writeFileSync } from 'node:fs';\nprocess.on('SIGTERM', () => {});\nwriteFileSync(new URL('../ready', import.meta.url), '');\nsetInterval(() => {}, 1000);\n",
    );
    await symlink(join('releases', 'stub'), join(stubRoot, 'current'));
    const stubEnv = { ...env, RUN_DIR: join(stubRoot, 'run'), LOG_DIR: join(stubRoot, 'logs'), STOP_WAIT_TENTHS: '5' };
    await run('bin/service', ['start'], { cwd: join(stubRoot, 'current'), env: stubEnv, timeout: 30_000 });
    const pid = Number((await readFile(join(stubRoot, 'run', 'app.pid'), 'utf8')).trim());
    const until = Date.now() + 30_000;
    while (Date.now() < until && !existsSync(join(release, 'ready'))) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid)).toBe(true);
    const { stdout } = await run('bin/service', ['stop'], { cwd: join(stubRoot, 'current'), env: stubEnv, timeout: 30_000 });
    expect(stdout).toContain('sending KILL');
    const gone = Date.now() + 20_000;
    while (alive(pid) && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid)).toBe(false);
  });
});
