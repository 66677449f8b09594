/**
 * SESSION_STORE=redis against real processes: one redis-server and two real app processes (A, B)
 * sharing it, then the real Lockstep proxy in front of them running the deploy's isolation check
 * unchanged. Loopback range 127.0.11.x only (this file's own base).
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadInventory } from '../../config/inventory.ts';
import { verifyFleet } from '../../deployer/checks/verify.ts';
import { scanDrift } from '../../deployer/drift/scan.ts';
import { openFleet } from '../../deployer/fleet/fleet.ts';
import { serviceEnv } from '../../deployer/fleet/instance.ts';
import { layoutOf } from '../../deployer/remote/layout.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { buildScript } from '../../deployer/transport/shell.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkSessionIsolation, isolationInputFromInventory } from '../../deployer/checks/isolation.ts';
import { startRedisServer, type RunningRedis } from '../../deployer/cli/redis-server.ts';
import { startProxy, type RunningProxy } from '../../proxy/index.ts';
import { RedisSessionStore } from '../../app/server/redis-sessions.ts';
import { buildRelease, markerCsv, sessionCookieOf, startApp, tempDir, upload, UUID_V4, type RunningApp } from './support.ts';

const HOST = '127.0.11.1';
const REDIS_PORT = 4100;
/** Small on purpose, so the over-bound case needs only a ~100 kB upload. */
const BOUND = 200_000;

let redis: RunningRedis;
let client: Redis;
let release: string;
let a: RunningApp;
let b: RunningApp;
let proxy: RunningProxy | undefined;
const extra: RunningApp[] = [];

function redisEnv(port: number, more: Record<string, string> = {}): Record<string, string> {
  return { HOST, PORT: String(port), SESSION_STORE: 'redis', REDIS_URL: redis.url, SESSION_MAX_BYTES: String(BOUND), ...more };
}

beforeAll(async () => {
  redis = await startRedisServer(HOST, REDIS_PORT);
  client = new Redis(redis.url, { lazyConnect: true });
  await client.connect();
  release = await buildRelease();
  [a, b] = await Promise.all([
    startApp(release, redisEnv(4101, { LOCKSTEP_INSTANCE: 'app-a' })),
    startApp(release, redisEnv(4102, { LOCKSTEP_INSTANCE: 'app-b' })),
  ]);
});

afterAll(async () => {
  await proxy?.close();
  await Promise.all([a, b, ...extra].filter(Boolean).map((x) => x.stop()));
  client?.disconnect();
  await redis?.stop();
});

async function uploadOk(base: string, csv: string, headers: Record<string, string> = {}): Promise<{ id: string; cookie: string }> {
  const res = await upload(base, csv, { headers });
  const body = (await res.json()) as { session_id: string };
  expect(res.status, JSON.stringify(body)).toBe(200);
  return { id: body.session_id, cookie: sessionCookieOf(res)! };
}

async function readSession(base: string, cookie: string): Promise<{ status: number; text: string }> {
  const res = await fetch(`${base}/api/session`, { headers: { cookie } });
  return { status: res.status, text: await res.text() };
}

describe('SESSION_STORE=redis: two app processes, one redis-server', () => {
  it('/version says "redis" and the same config fingerprint on both, never the URL', async () => {
    const [va, vb] = await Promise.all([a, b].map(async (x) => (await fetch(`${x.url}/version`)).json() as Promise<Record<string, unknown>>));
    expect(va!.session_store).toBe('redis');
    expect(vb!.session_store).toBe('redis');
    expect(va!.config_fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(va!.config_fingerprint).toBe(vb!.config_fingerprint);
    expect(JSON.stringify(va)).not.toContain(String(REDIS_PORT));
  });

  it('a session created through A is served by B, with its data', async () => {
    const s = await uploadOk(a.url, markerCsv('MARK-A-TO-B'));
    expect(s.id).toMatch(UUID_V4);
    const read = await readSession(b.url, s.cookie);
    expect(read.status).toBe(200);
    expect(read.text).toContain('MARK-A-TO-B');
    const analysis = await fetch(`${b.url}/api/analysis`, { method: 'POST', headers: { cookie: s.cookie, 'content-type': 'application/json' }, body: '{"method":"composite"}' });
    expect(analysis.status).toBe(200);
    expect((await fetch(`${a.url}/api/analysis`, { headers: { cookie: s.cookie } })).status).toBe(200);
  });

  it('racing uploads on one session never mix: each gets its own new session holding only its own data', async () => {
    const first = await uploadOk(a.url, markerCsv('RACE-ORIGINAL'));
    const markers = Array.from({ length: 8 }, (_, i) => `RACE-${i}-${Math.random().toString(36).slice(2)}`);
    // All sent with the first session's cookie, half through A, half through B, at once.
    const results = await Promise.all(markers.map((m, i) => uploadOk(i % 2 ? b.url : a.url, markerCsv(m), { cookie: first.cookie })));
    expect(new Set([first.id, ...results.map((r) => r.id)]).size).toBe(markers.length + 1);
    const reads = await Promise.all(results.map((r, i) => readSession(i % 2 ? a.url : b.url, r.cookie)));
    reads.forEach((read, i) => {
      expect(read.status).toBe(200);
      for (const [j, m] of markers.entries()) expect(read.text.includes(m), `session ${i} holds marker ${j}`).toBe(i === j);
      expect(read.text).not.toContain('RACE-ORIGINAL');
    });
    const original = await readSession(b.url, first.cookie);
    expect(original.text).toContain('RACE-ORIGINAL');
    expect(markers.some((m) => original.text.includes(m))).toBe(false);
  });

  it('racing analyses on one session through A and B: the stored analysis is always one whole result', async () => {
    const s = await uploadOk(a.url, markerCsv('RACE-ANALYSIS', 12));
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        (['composite', 'pca', 'composite', 'pca'] as const).map(async (method, i) => {
          const res = await fetch(`${(i % 2 ? b : a).url}/api/analysis`, { method: 'POST', headers: { cookie: s.cookie, 'content-type': 'application/json' }, body: JSON.stringify({ method }) });
          expect(res.status).toBe(200);
          return (await res.json()) as Record<string, unknown>;
        }),
      );
      const stored = (await (await fetch(`${b.url}/api/analysis`, { headers: { cookie: s.cookie } })).json()) as Record<string, unknown>;
      // One of the racers' answers exactly, never a blend of two.
      expect(answers.map((x) => JSON.stringify(x))).toContain(JSON.stringify(stored));
    }
  });

  it('an upload over SESSION_MAX_BYTES is refused with 413 and writes nothing to Redis', async () => {
    const before = await client.dbsize();
    const big = markerCsv('TOO-BIG', 2500);
    expect(big.length).toBeLessThan(BOUND);
    const res = await upload(b.url, big);
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('SESSION_TOO_LARGE');
    expect(sessionCookieOf(res)).toBeNull();
    expect(await client.dbsize()).toBe(before);
  });

  it('the session and its data expire with the idle time (Redis TTL), then the cookie is 401', async () => {
    const c = await startApp(release, redisEnv(4103, { SESSION_IDLE_SECONDS: '1', REDIS_KEY_PREFIX: 'ttl-test:' }));
    extra.push(c);
    const s = await uploadOk(c.url, markerCsv('SHORT-LIVED'));
    const keys = await client.keys('ttl-test:*');
    expect(keys.sort().map((k) => k.split(':')[1])).toEqual(['session', 'upload']);
    for (const k of keys) {
      const ttl = await client.pttl(k);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(1000);
    }
    // Bounded wait for Redis to expire the keys; no claim about how fast.
    for (let i = 0; i < 100 && (await client.exists(...keys)) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await client.exists(...keys)).toBe(0);
    expect((await readSession(c.url, s.cookie)).status).toBe(401);
  });

  it('the store interface: ids are made by the store, unknown ids never become sessions, delete removes record and data', async () => {
    const store = new RedisSessionStore({ url: redis.url, idleMs: 60_000, maxBytes: BOUND, prefix: 'iface-test:' });
    await store.init();
    try {
      expect(await store.resolve('11111111-2222-4333-8444-555555555555')).toBeNull();
      expect(await store.resolve('../../etc/passwd')).toBeNull();
      const id = await store.create([{ name: 'a.json', content: '{"x":1}' }]);
      expect(id).toMatch(UUID_V4);
      expect(await store.resolve(id)).toBe(id);
      expect(await store.readJson(id, 'a.json')).toEqual({ x: 1 });
      expect(await store.readJson(id, 'missing.json')).toBeNull();
      await store.writeFile(id, 'b.json', '{"y":2}');
      expect(await store.readJson(id, 'b.json')).toEqual({ y: 2 });
      await expect(store.writeFile(id, 'c.bin', 'z'.repeat(BOUND))).rejects.toMatchObject({ statusCode: 413 });
      expect(await store.readJson(id, 'c.bin')).toBeNull();
      expect(await client.keys('iface-test:*')).toHaveLength(2);
      expect(await store.delete(id)).toBe(true);
      expect(await store.delete(id)).toBe(false);
      expect(await store.resolve(id)).toBeNull();
      expect(await client.keys('iface-test:*')).toEqual([]);
    } finally {
      await store.close();
    }
  });
});

describe('behind the real Lockstep proxy', () => {
  it('the isolation check passes unchanged against a redis-mode pair', async () => {
    proxy = await startProxy({
      listen: { host: HOST, port: 4110 },
      adminListen: { host: HOST, port: 4111 },
      adminToken: 'redis-test-admin-token-0123456789',
      affinitySecret: 'redis-test-affinity-secret-0123456789',
      upstreams: [
        { name: 'app-a', url: a.url },
        { name: 'app-b', url: b.url },
      ],
      healthCheck: { intervalMs: 100, timeoutMs: 2000, rise: 1, fall: 1 },
      hold: { sessionsShared: true },
    });
    const checks = { upload_paths: ['/api/upload', '/api/v1/data-analysis/upload'], upload_field: 'file', session_path: '/api/session', concurrent_sessions: 5 };
    const report = await checkSessionIsolation(isolationInputFromInventory(checks, proxy.url, { affinityCookie: 'lockstep_affinity' }));
    expect(report.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('a session created through A is served by B after A is killed', async () => {
    const p = proxy!;
    const res = await upload(p.url, markerCsv('SURVIVES-KILL'));
    expect(res.status).toBe(200);
    const cookies = res.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
    const who = (await (await fetch(`${p.url}/version`, { headers: { cookie: cookies } })).json()) as { instance: string };
    const [dead, alive] = who.instance === 'app-a' ? [a, b] : [b, a];
    dead.proc.kill('SIGKILL');
    await new Promise((r) => dead.proc.once('exit', r));
    const after = await fetch(`${p.url}/api/session`, { headers: { cookie: cookies } });
    expect(after.status).toBe(200);
    expect(await after.text()).toContain('SURVIVES-KILL');
    // And directly from the survivor.
    expect((await readSession(alive.url, cookies)).text).toContain('SURVIVES-KILL');
  });
});

describe('deployed by Lockstep with app.session_store: redis (local transport, 3 instances)', () => {
  it('verify reports the redis store on every instance; drift flags the one instance whose config fingerprint differs', async () => {
    const dir = await tempDir('deployed');
    const file = join(dir, 'inventory.yaml');
    const instances = [1, 2, 3].map((n) => `  - { name: web-${n}, transport: local, deploy_to: fleet/web-${n}, app_address: 127.0.11.5, app_port: ${4139 + n} }`).join('\n');
    writeFileSync(
      file,
      `app:
  build: { command: "true", output: ${JSON.stringify(release)} }
  service: { start: bin/service start, stop: bin/service stop, restart: bin/service restart }
  session_store: redis
  redis_url: ${redis.url}
  env: { REDIS_KEY_PREFIX: "deployed:", LOG_LEVEL: warn }
deploy: { batch_size: 3, probe: { enabled: false } }
instances:
${instances}
`,
    );
    const inv = loadInventory(file);
    try {
      const r = await deploy(inv, {});
      expect(r.ok, r.failure).toBe(true);
      const v = await verifyFleet(inv, { expected: { release: r.release, digest: r.digest } });
      const rows = v.reports[0]!.checks.filter((c) => c.check === 'session store');
      expect(rows.map((c) => [c.subject, c.status, c.found])).toEqual(['web-1', 'web-2', 'web-3'].map((n) => [n, 'pass', 'redis (shared by the fleet)']));
      expect((await scanDrift(inv)).report.instances.map((i) => [i.instance, i.items.map((x) => x.kind)])).toEqual([
        ['web-1', []],
        ['web-2', []],
        ['web-3', []],
      ]);

      // web-3 restarted by hand with another session secret: same release, other configuration.
      const inst = inv.instances[2]!;
      const layout = layoutOf(inst.deployTo);
      const script = buildScript(inv.app.service.restart, { cwd: layout.current, env: { ...serviceEnv(inst, layout, {}, inv.app), SESSION_SECRET: 'rotated-on-one-host-only' } });
      const restarted = spawnSync('sh', ['-c', script], { encoding: 'utf8', timeout: 60_000 });
      expect(restarted.status, restarted.stderr).toBe(0);
      // bin/service returns once the process is started; wait (bounded) until it answers.
      let fp: string | undefined;
      for (let i = 0; i < 300 && !fp; i++) {
        fp = await fetch(`${inst.url}/version`).then(
          async (res) => ((await res.json()) as { config_fingerprint?: string }).config_fingerprint,
          () => undefined,
        );
        if (!fp) await new Promise((res) => setTimeout(res, 100));
      }
      expect(fp).toMatch(/^sha256:/);
      const drift = (await scanDrift(inv)).report;
      expect(drift.instances.map((i) => [i.instance, i.items.map((x) => x.kind)])).toEqual([
        ['web-1', []],
        ['web-2', []],
        ['web-3', ['config-fingerprint']],
      ]);
      expect(drift.exitCode).toBe(1);
      expect(JSON.stringify(drift)).not.toContain('rotated-on-one-host-only');
    } finally {
      const fleet = openFleet(inv);
      await fleet.each((o) => o.stopApp()).catch(() => undefined);
      await fleet.close();
    }
  });
});
