/** /healthz and /version of the real built app: the release identity comes from manifest.json. */
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, freePort, startApp, tempDir, type RunningApp } from './support.ts';

let release: string;
const running: RunningApp[] = [];

beforeAll(async () => {
  release = await buildRelease();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((a) => a.stop()));
  await rm(join(release, 'manifest.json'), { force: true });
});

describe('/version', () => {
  it('reports release and digest from manifest.json in the release root, plus instance, pid and start time', async () => {
    const manifest = {
      schema: 1,
      release: '20261130T0802Z-1a2b3c4d',
      digest: '1a2b3c4d'.padEnd(64, 'e'),
      files: [],
    };
    await writeFile(join(release, 'manifest.json'), JSON.stringify(manifest));
    const app = await startApp(release, { LOCKSTEP_INSTANCE: 'instance-7' });
    running.push(app);
    const res = await fetch(`${app.url}/version`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      release: manifest.release,
      digest: manifest.digest,
      instance: 'instance-7',
      pid: app.proc.pid,
    });
    expect(Number.isNaN(Date.parse(body.started_at as string))).toBe(false);
  });

  it('keeps reporting the manifest it started with when the file changes on disk', async () => {
    await writeFile(join(release, 'manifest.json'), JSON.stringify({ release: 'first', digest: 'a'.repeat(64) }));
    const app = await startApp(release);
    running.push(app);
    await writeFile(join(release, 'manifest.json'), JSON.stringify({ release: 'second', digest: 'b'.repeat(64) }));
    expect(await (await fetch(`${app.url}/version`)).json()).toMatchObject({ release: 'first', digest: 'a'.repeat(64) });
  });

  it('says release "dev" and digest null without a manifest', async () => {
    const app = await startApp(release);
    running.push(app);
    expect(await (await fetch(`${app.url}/version`)).json()).toMatchObject({ release: 'dev', digest: null, instance: null });
    const health = await fetch(`${app.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('does not log the health and version polls, but logs API requests', async () => {
    const app = await startApp(release, { LOG_LEVEL: 'info' });
    running.push(app);
    await fetch(`${app.url}/healthz`);
    await fetch(`${app.url}/version`);
    await fetch(`${app.url}/api/session`);
    await app.stop();
    expect(app.output()).toContain('"/api/session"');
    expect(app.output()).not.toContain('"/healthz"');
    expect(app.output()).not.toContain('"/version"');
  });

  it('refuses to start with a manifest that is not valid', async () => {
    await writeFile(join(release, 'manifest.json'), '{"release": 42');
    const port = await freePort();
    const proc = spawn(process.execPath, [join(release, 'server', 'index.mjs')], {
      env: { PATH: process.env.PATH ?? '', PORT: String(port), DATA_DIR: join(await tempDir('data'), 'd') },
      stdio: 'ignore',
    });
    const code = await new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    expect(code).not.toBe(0);
  });
});
