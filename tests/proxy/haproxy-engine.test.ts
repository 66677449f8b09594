// The HAProxy engine against one real haproxy (Debian's 2.6) and three small real HTTP upstreams
// on 127.0.10.x: the admin API reads and changes HAProxy's state through its Runtime API, a drain
// waits for the request in flight, a request pinned to a draining server is held until it is enabled
// (not failed, not moved), and drain/disable survive an admin reload (with a new instance) and a
// stop + start of the engine (server-state-file).
import http from 'node:http';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxyAdminClient } from '../../deployer/balancer/admin-client.ts';
import { loadInventory } from '../../config/inventory.ts';
import { startEngine, type RunningEngine } from '../../proxy/engine.ts';
import { runProxyCommand } from '../../proxy/command.ts';

const HOST = '127.0.10.2';
const PORTS = [4111, 4112, 4113, 4114];
const TOKEN = 't'.repeat(32);
const env = { LOCKSTEP_ADMIN_TOKEN: TOKEN, LOCKSTEP_AFFINITY_SECRET: 's'.repeat(32) };
const servers: http.Server[] = [];
let dir: string;
let file: string;
let engine: RunningEngine | undefined;

function writeInventory(count: number): void {
  const instances = PORTS.slice(0, count)
    .map((p, i) => `  - {name: i${i + 1}, transport: local, deploy_to: d${i + 1}, app_address: ${HOST}, app_port: ${p}}`)
    .join('\n');
  writeFileSync(
    file,
    `app:\n  build: {command: "true", output: out}\n  service: {start: a, stop: b, restart: c}\nproxy:\n  engine: haproxy\n  listen: ${HOST}:4110\n  admin_listen: ${HOST}:4109\n  hold_timeout_ms: 10000\n  health_check: {interval_ms: 100, timeout_ms: 1000, rise: 1, fall: 2}\ninstances:\n${instances}\n`,
  );
}

async function start(): Promise<{ engine: RunningEngine; admin: ProxyAdminClient }> {
  engine = await startEngine(loadInventory(file), { env, logger: pino({ level: 'silent' }), workers: 1 });
  return { engine, admin: new ProxyAdminClient(engine.adminUrl, TOKEN) };
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-hxeng-'));
  file = join(dir, 'inventory.yaml');
  for (const [i, port] of PORTS.entries()) {
    const s = http.createServer((req, res) => {
      const slow = req.url === '/slow' ? 1500 : 0;
      setTimeout(() => res.end(`i${i + 1}`), slow);
    });
    await new Promise<void>((r) => s.listen(port, HOST, r));
    servers.push(s);
  }
});
afterAll(async () => {
  await engine?.close();
  for (const s of servers) s.closeAllConnections(), s.close();
});

describe('HAProxy engine through the admin API', () => {
  it('lists, drains with wait, holds pinned requests while draining, and keeps drain/disable across reload and restart', async () => {
    writeInventory(3);
    let { engine: e, admin } = await start();
    await until('3 healthy instances', async () => (await admin.listInstances()).filter((i) => i.healthy).length === 3);
    expect((await admin.listInstances()).map((i) => [i.name, i.state, i.url])).toEqual([
      ['i1', 'enabled', `http://${HOST}:4111`],
      ['i2', 'enabled', `http://${HOST}:4112`],
      ['i3', 'enabled', `http://${HOST}:4113`],
    ]);

    // A client pinned to i2 (HAProxy's cookie), with a slow request in flight on it.
    let cookie = '';
    for (let n = 0; n < 6 && !cookie; n++) {
      const r = await request(`${e.url}/`);
      if ((await r.body.text()) === 'i2') cookie = String(r.headers['set-cookie']).split(';')[0]!;
    }
    expect(cookie).toMatch(/^lockstep_affinity=[0-9a-f]{16}$/);
    const slow = request(`${e.url}/slow`, { headers: { cookie } }).then((r) => r.body.text());
    await until('the slow request is on i2', async () => (await admin.listInstances()).find((i) => i.name === 'i2')!.inflight === 1);
    const drained = await admin.drain('i2', { waitMs: 10_000 });
    expect(drained).toMatchObject({ state: 'draining', drained: true, inflight: 0 });
    expect(await slow).toBe('i2');

    // While i2 drains, its pinned client waits for it (held), and is served by i2 once enabled.
    let heldDone = false;
    const held = request(`${e.url}/`, { headers: { cookie } }).then(async (r) => {
      heldDone = true;
      return r.body.text();
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(heldDone).toBe(false);
    // Unpinned work avoids the draining server.
    for (let n = 0; n < 4; n++) expect(await (await request(`${e.url}/`)).body.text()).not.toBe('i2');
    await admin.enable('i2');
    expect(await held).toBe('i2');

    // Disabled (maint) and draining survive a reload that adds an instance...
    await admin.disable('i1');
    await admin.drain('i3');
    writeInventory(4);
    expect(await admin.reload()).toMatchObject({ added: ['i4'], removed: [] });
    const afterReload = await admin.listInstances();
    expect(afterReload.map((i) => [i.name, i.state])).toEqual([
      ['i1', 'disabled'],
      ['i2', 'enabled'],
      ['i3', 'draining'],
      ['i4', 'enabled'],
    ]);
    // ... and a stop and start of HAProxy itself.
    await e.close();
    ({ engine: e, admin } = await start());
    expect((await admin.listInstances()).map((i) => [i.name, i.state])).toEqual([
      ['i1', 'disabled'],
      ['i2', 'enabled'],
      ['i3', 'draining'],
      ['i4', 'enabled'],
    ]);
    // Traffic goes only to the enabled ones.
    await until('i4 healthy', async () => (await admin.listInstances()).find((i) => i.name === 'i4')!.healthy);
    const seen = new Set<string>();
    for (let n = 0; n < 8; n++) seen.add(await (await request(`${e.url}/`)).body.text());
    expect([...seen].sort()).toEqual(['i2', 'i4']);
    expect(await admin.metrics()).toMatch(/lockstep_proxy_requests_total\{instance="i2",status_class="2xx"\} [1-9]/);
  });

  it('lockstep proxy with engine haproxy: prints the servers, and exits 1 when HAProxy dies under it', async () => {
    await engine?.close();
    engine = undefined;
    writeInventory(2);
    const lines: string[] = [];
    let started: RunningEngine | undefined;
    const done = runProxyCommand(loadInventory(file), { env, logLevel: 'silent', print: (l) => lines.push(l), onEngineStarted: (e) => (started = e) });
    await until('started', async () => started !== undefined);
    expect(lines[0]).toContain(`listening on http://${HOST}:4110 (admin API http://${HOST}:4109, engine haproxy), 2 instance(s):`);
    expect(lines.slice(1).map((l) => l.trim().split(/\s+/)[0])).toEqual(['i1', 'i2']);
    process.kill(Number(readFileSync(join(dir, '.lockstep/haproxy/haproxy.pid'), 'utf8')), 'SIGKILL');
    expect(await done).toBe(1);
  });
});
