/** Session expiry after an idle time, and the sweeper that deletes expired sessions. */
import { existsSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { v4 as uuidv4 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskSessionStore as SessionStore } from '../../app/server/sessions.ts';
import { buildRelease, markerCsv, sessionCookieOf, startApp, tempDir, upload, type RunningApp } from './support.ts';

const HOUR = 3600_000;

async function age(dir: string, ms: number): Promise<void> {
  const then = new Date(Date.now() - ms);
  await utimes(dir, then, then);
}

describe('SessionStore', () => {
  it('expires a session idle longer than the idle time, and keeps a recent one', async () => {
    const store = new SessionStore(join(await tempDir('store'), 'data'), HOUR);
    await store.init();
    const old = await store.create([{ name: 'a.json', content: '{}' }]);
    const fresh = await store.create([{ name: 'a.json', content: '{}' }]);
    await age(join(store.root, old), 2 * HOUR);
    expect(await store.sweep()).toBe(1);
    expect(existsSync(join(store.root, old))).toBe(false);
    expect(existsSync(join(store.root, fresh))).toBe(true);
  });

  it('treats an expired session as unknown when it is used, and deletes it', async () => {
    const store = new SessionStore(join(await tempDir('store'), 'data'), HOUR);
    await store.init();
    const id = await store.create([{ name: 'a.json', content: '{}' }]);
    await age(join(store.root, id), 2 * HOUR);
    expect(await store.resolve(id)).toBeNull();
    expect(existsSync(join(store.root, id))).toBe(false);
  });

  it('use keeps a session alive: resolving refreshes its idle clock', async () => {
    const store = new SessionStore(join(await tempDir('store'), 'data'), HOUR);
    await store.init();
    const id = await store.create([{ name: 'a.json', content: '{}' }]);
    await age(join(store.root, id), HOUR / 2);
    expect(await store.resolve(id)).toBe(id);
    expect(await store.sweep(Date.now() + HOUR * 0.75)).toBe(0);
  });

  it('removes temporary directories left by an upload that crashed mid-way', async () => {
    const store = new SessionStore(join(await tempDir('store'), 'data'), HOUR);
    await store.init();
    const leftover = join(store.root, '.tmp', `${uuidv4()}.abc`);
    await mkdir(leftover);
    await writeFile(join(leftover, 'table.json'), '{');
    await age(leftover, 2 * HOUR);
    await store.sweep();
    expect(existsSync(leftover)).toBe(false);
  });

  it('never resolves a directory that is not a canonical UUIDv4', async () => {
    const store = new SessionStore(join(await tempDir('store'), 'data'), HOUR);
    await store.init();
    await mkdir(join(store.root, 'not-a-uuid'));
    expect(await store.resolve('not-a-uuid')).toBeNull();
    expect(await store.resolve('.tmp')).toBeNull();
    expect(await store.resolve('../sessions')).toBeNull();
  });
});

describe('expiry in the running app', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startApp(await buildRelease(), { SESSION_IDLE_SECONDS: '3600', SESSION_SWEEP_SECONDS: '1' });
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('an idle session stops answering and the sweeper deletes it', async () => {
    const a = sessionCookieOf(await upload(app.url, markerCsv('EXPIRES-A')))!;
    const b = sessionCookieOf(await upload(app.url, markerCsv('EXPIRES-B')))!;
    const idOf = (c: string) => c.split('=')[1]!;
    // Used one: answers 401 on its next request.
    await age(join(app.dataDir, 'sessions', idOf(a)), 2 * 3600_000);
    const res = await fetch(`${app.url}/api/session`, { headers: { cookie: a } });
    expect(res.status).toBe(401);
    expect(await res.text()).not.toContain('EXPIRES-A');
    // Unused one: the periodic sweep removes it (wait for it, bounded; no assertion on time).
    const dirB = join(app.dataDir, 'sessions', idOf(b));
    await age(dirB, 2 * 3600_000);
    const until = Date.now() + 30_000;
    while (existsSync(dirB) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    expect(existsSync(dirB)).toBe(false);
  });

  it('guessed ids get nothing: 200 random UUIDv4 cookies are all refused', async () => {
    await upload(app.url, markerCsv('GUESS-ME'));
    const statuses = await Promise.all(
      Array.from({ length: 200 }, async () => (await fetch(`${app.url}/api/session`, { headers: { cookie: `analysis_session=${uuidv4()}` } })).status),
    );
    expect(new Set(statuses)).toEqual(new Set([401]));
  });
});
