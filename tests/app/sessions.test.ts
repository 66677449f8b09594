/**
 * Session isolation of the real built app, over HTTP: the incident's three checks (distinct ids
 * under concurrency, markers seen only by their own session, forged ids ignored) plus the
 * cookie rules and the compatibility routes.
 */
import { readdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, markerCsv, realDataDir, sessionCookieOf, startApp, upload, UUID_V4, type RunningApp } from './support.ts';

let release: string;
let app: RunningApp;

beforeAll(async () => {
  release = await buildRelease();
  app = await startApp(release);
});
afterAll(async () => {
  await app?.stop();
});

async function uploadOk(csv: string, opts: Parameters<typeof upload>[2] = {}) {
  const res = await upload(app.url, csv, opts);
  const body = (await res.json()) as Record<string, unknown>;
  expect(res.status, JSON.stringify(body)).toBe(200);
  const cookie = sessionCookieOf(res);
  expect(cookie).not.toBeNull();
  return { res, body, id: body.session_id as string, cookie: cookie! };
}

async function readSession(cookie: string | null) {
  const res = await fetch(`${app.url}/api/session`, { headers: cookie ? { cookie } : {} });
  return { status: res.status, text: await res.text() };
}

async function sessionDirs(): Promise<string[]> {
  return (await readdir(join(app.dataDir, 'sessions'))).filter((n) => n !== '.tmp');
}

describe('upload', () => {
  it('answers with a fresh UUIDv4 session, counts, and an HttpOnly SameSite=Lax cookie', async () => {
    const { res, body, id, cookie } = await uploadOk(markerCsv('m-basic'));
    expect(body.status).toBe('success');
    expect(id).toMatch(UUID_V4);
    expect(body.rows).toBe(3);
    expect(body.columns).toBe(5);
    expect(cookie).toBe(`analysis_session=${id}`);
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('analysis_session='))!;
    expect(setCookie).toMatch(/;\s*HttpOnly/i);
    expect(setCookie).toMatch(/;\s*SameSite=Lax/i);
    expect(setCookie).toMatch(/;\s*Path=\//i);
    expect(setCookie).not.toMatch(/;\s*Secure/i);
    expect(existsSync(join(app.dataDir, 'sessions', id, 'table.json'))).toBe(true);
  });

  it('marks the cookie Secure when the proxy says the request came over HTTPS', async () => {
    const res = await upload(app.url, markerCsv('m-https'), { headers: { 'x-forwarded-proto': 'https' } });
    expect(res.status).toBe(200);
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('analysis_session='))!;
    expect(setCookie).toMatch(/;\s*Secure/i);
  });

  it.each(['/api/upload', '/api/v1/data-analysis/upload', '/api/data-analysis/upload'])(
    '%s gives 5 concurrent uploads 5 distinct UUIDv4 sessions',
    async (path) => {
      const results = await Promise.all(
        ['Kano', 'Niger', 'Adamawa', 'Kebbi', 'Lagos'].map((state) => uploadOk(markerCsv(`state-${state}`), { path })),
      );
      const ids = results.map((r) => r.id);
      for (const id of ids) expect(id).toMatch(UUID_V4);
      expect(new Set(ids).size).toBe(5);
    },
  );

  it('/upload_both_files (incident app) takes csv_file + shapefile and gives 3 concurrent uploads distinct sessions', async () => {
    const zip = new Uint8Array(readFileSync(join(realDataDir, 'Niger_State.zip')));
    const results = await Promise.all(
      [1, 2, 3].map((i) =>
        // Three real Niger wards (codes from Niger_plus.csv), so the pair shares wards with the zip.
        uploadOk(`WardName,WardCode,note,pfpr\nAdahe,NISAGR01,both-${i},0.2\nAdono,NISPAK01,both-${i},0.3\n`, {
          path: '/upload_both_files',
          field: 'csv_file',
          files: { shapefile: { name: 'Niger_State.zip', content: zip } },
        }),
      ),
    );
    expect(new Set(results.map((r) => r.id)).size).toBe(3);
    for (const r of results) expect(r.body.shapefile).toMatchObject({ feature_count: 275 });
  });

  it('treats an empty file input (no name, no bytes) as no shapefile', async () => {
    const form = new FormData();
    form.append('csv_file', new Blob([markerCsv('m-empty-input')]), 'wards.csv');
    form.append('shapefile', new Blob([]), '');
    const res = await fetch(`${app.url}/upload_both_files`, { method: 'POST', body: form });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { shapefile?: unknown }).shapefile).toBeUndefined();
  });

  it('shows each of 5 concurrent sessions only its own marker', async () => {
    const markers = [1, 2, 3, 4, 5].map((i) => `MARKER-${i}-${Math.random().toString(36).slice(2)}`);
    const uploads = await Promise.all(markers.map((m) => uploadOk(markerCsv(m))));
    const reads = await Promise.all(uploads.map((u) => readSession(u.cookie)));
    reads.forEach((read, i) => {
      expect(read.status).toBe(200);
      markers.forEach((m, j) => {
        if (i === j) expect(read.text).toContain(m);
        else expect(read.text).not.toContain(m);
      });
    });
  });
});

describe('client-supplied session ids are ignored', () => {
  it('in the form, the query, a header and a cookie: each upload gets a new id and the victim is untouched', async () => {
    const victim = await uploadOk(markerCsv('VICTIM-DATA'));
    const forged = await uploadOk(markerCsv('ATTACKER-DATA'), {
      fields: { session_id: victim.id, sessionId: victim.id },
      query: `?session_id=${victim.id}`,
      headers: {
        'x-session-id': victim.id,
        'session-id': victim.id,
        cookie: `analysis_session=${victim.id}; session_id=${victim.id}`,
      },
    });
    expect(forged.id).toMatch(UUID_V4);
    expect(forged.id).not.toBe(victim.id);

    const victimView = await readSession(victim.cookie);
    expect(victimView.text).toContain('VICTIM-DATA');
    expect(victimView.text).not.toContain('ATTACKER-DATA');
    const attackerView = await readSession(forged.cookie);
    expect(attackerView.text).toContain('ATTACKER-DATA');
    expect(attackerView.text).not.toContain('VICTIM-DATA');
  });

  it('a forged id that names no session never becomes one', async () => {
    const invented = '11111111-2222-4333-8444-555555555555';
    const res = await uploadOk(markerCsv('m-invented'), { fields: { session_id: invented }, query: `?session_id=${invented}` });
    expect(res.id).not.toBe(invented);
    expect(existsSync(join(app.dataDir, 'sessions', invented))).toBe(false);
    expect((await readSession(`analysis_session=${invented}`)).status).toBe(401);
    expect(existsSync(join(app.dataDir, 'sessions', invented))).toBe(false);
  });
});

describe('GET /api/session', () => {
  it('without a cookie is 401 JSON with no session data', async () => {
    await uploadOk(markerCsv('SECRET-NO-COOKIE'));
    const res = await fetch(`${app.url}/api/session`);
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ status: 'error', code: 'NO_SESSION' });
    expect(text).not.toContain('SECRET-NO-COOKIE');
    expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-4/);
  });

  it.each([
    ['an unknown UUIDv4', '9b2e0a52-6c1f-4f57-9d43-0f3f6b2d9c11'],
    ['a path', '..%2F..%2Fetc'],
    ['a non-v4 UUID', '9b2e0a52-6c1f-1f57-9d43-0f3f6b2d9c11'],
    ['garbage', 'x'],
  ])('with a cookie naming %s is 401', async (_what, value) => {
    const res = await readSession(`analysis_session=${value}`);
    expect(res.status).toBe(401);
    expect(JSON.parse(res.text)).toMatchObject({ code: 'NO_SESSION' });
  });

  it('does not accept the upper-case spelling of a real id (ids are canonical)', async () => {
    const { id } = await uploadOk(markerCsv('m-case'));
    expect((await readSession(`analysis_session=${id.toUpperCase()}`)).status).toBe(401);
  });

  it('is never cached by a shared cache', async () => {
    const { cookie } = await uploadOk(markerCsv('m-cache'));
    const res = await fetch(`${app.url}/api/session`, { headers: { cookie } });
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('the page and its hashed assets are cached as they should be, under a strict CSP', async () => {
    const page = await fetch(`${app.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('cache-control')).toBe('no-cache');
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(await page.text())![1]!;
    const res = await fetch(`${app.url}${asset}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toMatch(/immutable/);
  });

  it('never answers 304 for the page from file stats (releases share one fixed mtime)', async () => {
    const page = await fetch(`${app.url}/`);
    expect(page.headers.get('etag')).toBeNull();
    expect(page.headers.get('last-modified')).toBeNull();
    // A browser holding an older release's page revalidates: it must get this release's page whole.
    const again = await fetch(`${app.url}/`, { headers: { 'if-modified-since': new Date(Date.now() + 86_400_000).toUTCString(), 'if-none-match': '*' } });
    expect(again.status).toBe(200);
    expect(await again.text()).toBe(await page.text());
  });

  it('pages rows with offset and limit', async () => {
    const { cookie } = await uploadOk(markerCsv('m-page', 10));
    const res = await fetch(`${app.url}/api/session?offset=8&limit=5`, { headers: { cookie } });
    const body = (await res.json()) as { rows: number; data: string[][] };
    expect(body.rows).toBe(10);
    expect(body.data.map((r) => r[0])).toEqual(['Ward 9', 'Ward 10']);
    expect((await fetch(`${app.url}/api/session?limit=-1`, { headers: { cookie } })).status).toBe(400);
  });
});

describe('failed uploads leave nothing behind', () => {
  it.each([
    ['not a CSV', 400, 'NOT_CSV', new Uint8Array([0x50, 0x4b, 0x03, 0x04, 1, 2, 3])],
    ['a CSV with no numeric column', 422, 'NO_NUMERIC_COLUMN', 'WardName,note\nA,x\n'],
    ['an empty file', 400, 'EMPTY_FILE', ''],
  ])('%s -> %i %s, no new session directory', async (_what, status, code, content) => {
    const before = await sessionDirs();
    const res = await upload(app.url, content, { fields: { session_id: 'ignored' } });
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ status: 'error', code, file: 'wards.csv' });
    expect(sessionCookieOf(res)).toBeNull();
    expect(await sessionDirs()).toEqual(before);
    expect(await readdir(join(app.dataDir, 'sessions', '.tmp'))).toEqual([]);
  });

  it.each([
    ['a header row of numbers', '1,2,3\n4,5,6\n', 422, { code: 'NO_HEADER', row: 1 }],
    ['a duplicated column', 'WardName,pfpr,pfpr\nA,1,2\n', 422, { code: 'DUPLICATE_COLUMN', column: 'pfpr' }],
    ['a ragged row', 'WardName,pfpr\nA,0.1\nB,0.2,9\n', 422, { code: 'CSV_BAD_ROW', row: 3 }],
    ['no ward column', 'district,pfpr\nA,0.1\n', 422, { code: 'NO_WARD_COLUMN' }],
    ['a ward without a name', 'WardName,pfpr\nA,0.1\n,0.2\n', 422, { code: 'MISSING_WARD_NAME', row: 3, column: 'WardName' }],
    ['Latin-1 text', Buffer.from('WardName,pfpr\nK\xe9bbi,0.1\n', 'latin1'), 400, { code: 'NOT_UTF8', row: 2 }],
  ])('%s -> %i with the location, no session', async (_what, content, status, expected) => {
    const before = await sessionDirs();
    const res = await upload(app.url, typeof content === 'string' ? content : new Uint8Array(content));
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ status: 'error', file: 'wards.csv', ...expected });
    expect(sessionCookieOf(res)).toBeNull();
    expect(await sessionDirs()).toEqual(before);
  });

  it('no file -> 400 NO_FILE', async () => {
    const form = new FormData();
    form.append('session_id', 'x');
    const res = await fetch(`${app.url}/api/upload`, { method: 'POST', body: form });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'NO_FILE' });
  });

  it('not multipart -> 415', async () => {
    const res = await fetch(`${app.url}/api/upload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ session_id: 'x' }),
    });
    expect(res.status).toBe(415);
    expect(await res.json()).toMatchObject({ status: 'error', code: 'NOT_MULTIPART' });
  });
});

describe('file names from the client', () => {
  it.each(['../../../escape-me.csv', '/tmp/lockstep-abs-escape.csv', '..\\..\\win-escape.csv'])('%s is kept as a bare name, never used as a path', async (name) => {
    const { id } = await uploadOk(markerCsv('named'), { filename: name });
    const bare = name.split(/[\\/]/).pop()!;
    const meta = JSON.parse(readFileSync(join(app.dataDir, 'sessions', id, 'meta.json'), 'utf8')) as { files: { csv: { name: string } } };
    expect(meta.files.csv.name).toBe(bare);
    // Nothing written outside the session's directory under the client's name.
    for (const dir of [app.dataDir, join(app.dataDir, '..'), join(app.dataDir, '..', '..'), join(app.dataDir, 'sessions')]) expect(existsSync(join(dir, bare))).toBe(false);
    expect(existsSync('/tmp/lockstep-abs-escape.csv')).toBe(false);
    expect((await readdir(join(app.dataDir, 'sessions', id))).some((f) => f.includes('..') || f.includes('escape'))).toBe(false);
  });
});

describe('limits and restarts', () => {
  it('a file past UPLOAD_MAX_BYTES is refused with 413 and stores nothing', async () => {
    const small = await startApp(release, { UPLOAD_MAX_BYTES: '2000' });
    try {
      const res = await upload(small.url, markerCsv('big', 200));
      expect(res.status).toBe(413);
      expect(await res.json()).toMatchObject({ status: 'error', code: 'FILE_TOO_LARGE' });
      expect(sessionCookieOf(res)).toBeNull();
      const dirs = (await readdir(join(small.dataDir, 'sessions'))).filter((n) => n !== '.tmp');
      expect(dirs).toEqual([]);
      expect((await upload(small.url, markerCsv('fits', 2))).status).toBe(200);
    } finally {
      await small.stop();
    }
  });

  it('a session survives a restart of the app on the same data directory', async () => {
    const first = await startApp(release);
    const res = await upload(first.url, markerCsv('SURVIVES-RESTART'));
    const cookie = sessionCookieOf(res)!;
    await first.stop();
    const second = await startApp(release, { DATA_DIR: first.dataDir });
    try {
      const read = await fetch(`${second.url}/api/session`, { headers: { cookie } });
      expect(read.status).toBe(200);
      expect(await read.text()).toContain('SURVIVES-RESTART');
    } finally {
      await second.stop();
    }
  });
});

describe('sign-out: DELETE /api/session', () => {
  it('deletes the session\'s upload and analysis on the server, clears the cookie, and leaves other sessions alone', async () => {
    const zip = new Uint8Array(readFileSync(join(realDataDir, 'Niger_State.zip')));
    const csv = new Uint8Array(readFileSync(join(realDataDir, 'Niger_plus.csv')));
    const res = await upload(app.url, csv, { filename: 'Niger_plus.csv', files: { shapefile: { name: 'Niger_State.zip', content: zip } } });
    expect(res.status).toBe(200);
    const { session_id: id } = (await res.json()) as { session_id: string };
    const cookie = sessionCookieOf(res)!;
    const other = await uploadOk(markerCsv('m-stays'));
    expect((await fetch(`${app.url}/api/analysis`, { method: 'POST', headers: { cookie } })).status).toBe(200);
    const dir = join(app.dataDir, 'sessions', id);
    expect(existsSync(join(dir, 'analysis.json'))).toBe(true);
    expect(existsSync(join(dir, 'upload.csv'))).toBe(true);

    const out = await fetch(`${app.url}/api/session`, { method: 'DELETE', headers: { cookie } });
    expect(out.status).toBe(200);
    expect(await out.json()).toEqual({ status: 'success', deleted: true });
    const cleared = out.headers.getSetCookie().find((c) => c.startsWith('analysis_session='))!;
    expect(cleared).toMatch(/^analysis_session=;/);
    expect(cleared).toMatch(/Expires=Thu, 01 Jan 1970|Max-Age=0/);
    expect(cleared).toMatch(/Path=\//);
    expect(existsSync(dir)).toBe(false);
    expect(await sessionDirs()).not.toContain(id);
    // The old cookie names nothing any more, on every route.
    expect((await readSession(cookie)).status).toBe(401);
    expect((await fetch(`${app.url}/api/analysis`, { headers: { cookie } })).status).toBe(401);
    expect((await fetch(`${app.url}/api/map`, { headers: { cookie } })).status).toBe(401);
    expect((await fetch(`${app.url}/api/analysis/export.csv`, { headers: { cookie } })).status).toBe(401);
    // Another user's session is untouched.
    expect((await readSession(other.cookie)).text).toContain('m-stays');
    // Signing out again (or without a session) is harmless.
    const again = await fetch(`${app.url}/api/session`, { method: 'DELETE', headers: { cookie } });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ status: 'success', deleted: false });
    expect((await readSession(other.cookie)).status).toBe(200);
  });
});

describe('incident app compatibility routes', () => {
  it('GET /ping answers', async () => {
    const res = await fetch(`${app.url}/ping`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok' });
  });

  it('GET /api/session/status reports no session without a cookie, and the own session with one', async () => {
    const none = await fetch(`${app.url}/api/session/status`);
    expect(none.status).toBe(200);
    expect(await none.json()).toMatchObject({ active: false, session_id: null });
    const { id, cookie } = await uploadOk(markerCsv('m-status'));
    const mine = await fetch(`${app.url}/api/session/status`, { headers: { cookie } });
    expect(await mine.json()).toMatchObject({ status: 'success', active: true, session_id: id, rows: 3 });
  });
});
