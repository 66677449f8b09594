import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadInventory } from '../../config/inventory.ts';
import { runProxyCommand } from '../../proxy/command.ts';
import type { RunningProxy } from '../../proxy/index.ts';
import { request, servedBy, startUpstream, waitFor, writeProxyInventory as writeInventory, type TestUpstream } from './helpers.ts';

let upstreams: TestUpstream[] = [];

afterEach(async () => {
  await Promise.all(upstreams.map((u) => u.close()));
  upstreams = [];
});

describe('lockstep proxy command', () => {
  it('runs from an inventory, reloads its instance list, and stops when asked', async () => {
    upstreams = await Promise.all(['i1', 'i2'].map((n) => startUpstream(n)));
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-proxy-cmd-'));
    const file = writeInventory(dir, [upstreams[0]!]);
    const lines: string[] = [];
    const stop = new AbortController();
    let running: RunningProxy | undefined;
    const done = runProxyCommand(loadInventory(file), {
      logLevel: 'silent',
      env: {},
      print: (l) => lines.push(l),
      signal: stop.signal,
      onStarted: (p) => (running = p),
    });
    await waitFor('proxy started', () => running !== undefined);
    const p = running!;
    expect(lines[0]).toContain(`listening on ${p.url}`);
    expect(servedBy(await request(`${p.url}/x`))).toBe('i1');

    // The inventory gains an instance; the admin reload picks it up.
    writeInventory(dir, upstreams);
    const token = (await import('node:fs')).readFileSync(join(dir, '.lockstep/admin-token'), 'utf8').trim();
    const r = await request(`${p.adminUrl}/admin/reload`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(JSON.parse(r.body)).toMatchObject({ added: ['i2'], removed: [] });
    await waitFor('i2 healthy', () => p.instances()[1]?.healthy === true);

    stop.abort();
    expect(await done).toBe(0);
    expect(lines.at(-1)).toBe('lockstep proxy stopped');
    await expect(request(`${p.url}/x`)).rejects.toThrow();
  });

  it('as a process: reloads on SIGHUP, finishes an in-flight request on SIGTERM, then exits 0', async () => {
    upstreams = [await startUpstream('i1')];
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-proxy-cmd-'));
    const file = writeInventory(dir, upstreams);
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/run-proxy.ts'), file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'silent' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor('child listening', () => /listening on (http:\/\/\S+)/.test(out), 400);
    const url = /listening on (http:\/\/\S+)/.exec(out)![1]!;

    // SIGHUP: the inventory gained an instance; it gets traffic without a restart.
    const extra = await startUpstream('i2');
    upstreams.push(extra);
    writeInventory(dir, upstreams);
    child.kill('SIGHUP');
    await waitFor('i2 serves after SIGHUP', async () => {
      await request(`${url}/x`);
      return extra.hits > 0;
    });

    // SIGTERM with a request in flight: it completes, then the process exits 0.
    let held: import('node:http').ServerResponse | undefined;
    for (const u of upstreams) u.handler = (_req, res) => (held = res);
    const inflight = request(`${url}/slow`);
    await waitFor('request reached an upstream', () => held !== undefined);
    child.kill('SIGTERM');
    await waitFor('child stopping', () => out.includes('stopping (SIGTERM)'));
    held!.end('finished');
    expect((await inflight).body).toBe('finished');
    expect(await exited).toBe(0);
  });
});
