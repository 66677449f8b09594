/**
 * Helpers for the app tests: build the real app into a temp directory, start the real bundled
 * server as a child process on a loopback port, and talk to it over HTTP.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { afterAll } from 'vitest';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
/** Real input data, kept outside the repository (never copied in). */
export const realDataDir = resolve(repoRoot, '..', 'shared', 'realdata');

export const run = promisify(execFile);

const created: string[] = [];
// Temp builds and data directories go when the test file is done. Registered when a test file
// imports this module, i.e. before the file's own hooks, so it runs after them (vitest runs
// after-hooks in reverse order): servers are stopped first. KEEP_TEST_DIRS=1 keeps them.
afterAll(async () => {
  if (process.env.KEEP_TEST_DIRS) return;
  await Promise.all(created.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A fresh temporary directory, removed when the test process exits. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `lockstep-app-${prefix}-`));
  created.push(dir);
  return dir;
}

/** Build the app with `node app/build.mjs --out <dir>`; returns the release directory. */
export async function buildRelease(out?: string): Promise<string> {
  const dir = out ?? join(await tempDir('build'), 'release');
  await run(process.execPath, [join(repoRoot, 'app', 'build.mjs'), '--out', dir], { cwd: repoRoot });
  return dir;
}

/** sha256 and mode of every file under `dir`, keyed by relative path. */
export async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(d: string): Promise<void> {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const st = await stat(p);
        const hash = createHash('sha256').update(await readFile(p)).digest('hex');
        out.set(relative(dir, p), `${hash} ${(st.mode & 0o777).toString(8)}`);
      }
    }
  }
  await walk(dir);
  return out;
}

/** A free TCP port on 127.0.0.1 (closed again before it is returned). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

export interface RunningApp {
  url: string;
  port: number;
  dataDir: string;
  proc: ChildProcess;
  /** Everything the server wrote to stdout/stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * Wait until `url` answers 200, the process exits, or `deadlineMs` passes (the deadline only
 * bounds a hung start; nothing asserts on how long it took).
 */
export async function waitForHealthy(url: string, proc: ChildProcess | null, deadlineMs = 30_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (proc && proc.exitCode !== null) throw new Error(`server exited with code ${proc.exitCode} before it was healthy`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} not healthy within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Start `<releaseDir>/server/index.mjs` with a temp DATA_DIR (unless given) and wait until healthy. */
export async function startApp(releaseDir: string, env: Record<string, string> = {}): Promise<RunningApp> {
  // A test on its own loopback range passes HOST and PORT; otherwise a free port on 127.0.0.1.
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const host = env.HOST ?? '127.0.0.1';
  const dataDir = env.DATA_DIR ?? join(await tempDir('data'), 'data');
  let output = '';
  const proc = spawn(process.execPath, [join(releaseDir, 'server', 'index.mjs')], {
    cwd: releaseDir,
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://${host}:${port}`;
  try {
    await waitForHealthy(url, proc);
  } catch (e) {
    proc.kill('SIGKILL');
    throw new Error(`${(e as Error).message}\n${output}`);
  }
  return {
    url,
    port,
    dataDir,
    proc,
    output: () => output,
    stop: () =>
      new Promise<void>((done) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return done();
        proc.once('exit', () => done());
        proc.kill('SIGTERM');
      }),
  };
}

export interface UploadOptions {
  path?: string;
  field?: string;
  filename?: string;
  /** Extra multipart text fields (e.g. a forged session_id). */
  fields?: Record<string, string>;
  /** Extra files: field -> {name, content}. */
  files?: Record<string, { name: string; content: Uint8Array<ArrayBuffer> | string }>;
  headers?: Record<string, string>;
  query?: string;
}

/** POST a multipart upload with the CSV text in `field` (default "file"). */
export async function upload(baseUrl: string, csv: string | Uint8Array<ArrayBuffer>, opts: UploadOptions = {}): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(opts.fields ?? {})) form.append(k, v);
  form.append(opts.field ?? 'file', new Blob([csv as BlobPart]), opts.filename ?? 'wards.csv');
  for (const [k, f] of Object.entries(opts.files ?? {})) form.append(k, new Blob([f.content as BlobPart]), f.name);
  return fetch(`${baseUrl}${opts.path ?? '/api/upload'}${opts.query ?? ''}`, { method: 'POST', body: form, headers: opts.headers });
}

/** The `name=value` pair of the session cookie set by a response, or null. */
export function sessionCookieOf(res: Response): string | null {
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(';')[0]!;
    if (pair.startsWith('analysis_session=')) return pair;
  }
  return null;
}

export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A small valid ward CSV with `marker` in a text cell of every row. */
export function markerCsv(marker: string, rows = 3): string {
  const lines = ['WardName,WardCode,note,pfpr,distance_to_water'];
  for (let i = 1; i <= rows; i++) lines.push(`Ward ${i},W${String(i).padStart(3, '0')},${marker},0.${i}5,${i * 100}`);
  return lines.join('\n') + '\n';
}
