/**
 * The proxy compiled by compile.mjs: worker mode finds its worker beside the bundle, and the
 * TypeScript sources (tests, benchmarks) find worker.ts. The process test runs the real
 * `bin/lockstep.mjs proxy`, which compiles build/ first when a source is newer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { workerEntry } from '../../proxy/worker-entry.ts';
import { request, servedBy, startUpstream, waitFor, writeProxyInventory, type TestUpstream } from './helpers.ts';

const repoRoot = resolve(import.meta.dirname, '../..');
let upstreams: TestUpstream[] = [];
let child: ChildProcess | undefined;

afterEach(async () => {
  if (child?.exitCode === null) child.kill('SIGTERM');
  child = undefined;
  await Promise.all(upstreams.map((u) => u.close()));
  upstreams = [];
});

describe('proxy worker entry', () => {
  it('from the sources: proxy/worker.ts through the tsx loader', () => {
    const e = workerEntry(pathToFileURL(join(repoRoot, 'proxy/cluster.ts')).href);
    expect(e.exec).toBe(join(repoRoot, 'proxy/worker.ts'));
    expect(e.execArgv).toEqual(['--import', expect.stringMatching(/^file:\/\/.*\/tsx\/dist\/loader\.mjs$/)]);
    expect(workerEntry().exec).toBe(join(repoRoot, 'proxy/worker.ts'));
  });

  it('compiled: proxy-worker.mjs beside the bundle, and a clear error when it is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-worker-entry-'));
    const bundle = pathToFileURL(join(dir, 'lockstep.mjs')).href;
    expect(() => workerEntry(bundle)).toThrow(`proxy worker ${join(dir, 'proxy-worker.mjs')} is missing: run \`npm run compile\``);
    writeFileSync(join(dir, 'proxy-worker.mjs'), '');
    expect(workerEntry(bundle)).toEqual({ exec: join(dir, 'proxy-worker.mjs'), execArgv: ['--enable-source-maps'] });
  });
});

describe('compiled lockstep proxy', () => {
  it('runs in worker mode from build/, serves, and stops on SIGTERM with exit 0', async () => {
    upstreams = [await startUpstream('i1')];
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-compiled-proxy-'));
    const file = writeProxyInventory(dir, upstreams);
    const proc = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), 'proxy', '--inventory', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOCKSTEP_PROXY_WORKERS: '2', LOCKSTEP_LOG: 'error' },
    });
    child = proc;
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((done) => proc.on('exit', (code) => done(code)));
    await waitFor('proxy listening', () => {
      if (proc.exitCode !== null) throw new Error(`lockstep proxy exited ${proc.exitCode}: ${out}`);
      return /listening on (http:\/\/\S+)/.test(out);
    }, 1200);
    expect(out).toContain('2 workers');
    const url = /listening on (http:\/\/\S+)/.exec(out)![1]!;
    await waitFor('i1 serves through a worker', async () => (await request(`${url}/x`)).status === 200);
    expect(servedBy(await request(`${url}/x`))).toBe('i1');
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
