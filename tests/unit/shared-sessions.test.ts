// Shared sessions and config fingerprints, the pure parts: the inventory keys, the service
// environment they produce, the proxy's hold setting, the app's fingerprint and drift's comparison.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../config/inventory.ts';
import { resolveProxyConfig } from '../../proxy/config.ts';
import { proxyConfigFromInventory } from '../../proxy/inventory-config.ts';
import { serviceEnv } from '../../deployer/fleet/instance.ts';
import { layoutOf } from '../../deployer/remote/layout.ts';
import { buildScript } from '../../deployer/transport/shell.ts';
import { commandSummary } from '../../deployer/transport/log.ts';
import { addConfigDriftItems } from '../../deployer/drift/fingerprint.ts';
import type { InstanceDrift } from '../../deployer/drift/types.ts';
import { loadConfig } from '../../app/server/config.ts';
import { configFingerprint } from '../../app/server/fingerprint.ts';

const dir = mkdtempSync(join(tmpdir(), 'lockstep-shared-'));
const SECRETS = { LOCKSTEP_ADMIN_TOKEN: 'a'.repeat(32), LOCKSTEP_AFFINITY_SECRET: 'b'.repeat(32) };

function inventory(app: string, proxy = ''): ReturnType<typeof parseInventory> {
  return parseInventory(
    `app:
  build: {command: "true", output: out}
  service: {start: a, stop: b, restart: c}
${app}
proxy:
  listen: 127.0.0.1:18080
${proxy}
instances:
  - {name: a, transport: local, deploy_to: a, app_port: 4001}
  - {name: b, transport: local, deploy_to: b, app_port: 4002}
`,
    join(dir, 'inventory.yaml'),
  );
}

describe('inventory: app.session_store, app.redis_url, app.env, proxy.sessions_shared', () => {
  it('refuses session_store: redis without redis_url, naming the field', () => {
    expect(() => inventory('  session_store: redis')).toThrow(/field "app\.redis_url": required with app\.session_store: redis/);
  });

  it('refuses app.env keys Lockstep sets itself', () => {
    expect(() => inventory('  env: {PORT: "1"}')).toThrow(/app\.env\.PORT.*set by Lockstep itself/);
    expect(() => inventory('  env: {REDIS_URL: "redis://x"}')).toThrow(/app\.env\.REDIS_URL/);
  });

  it('passes the store, the URL and app.env to the service, after the contract variables', () => {
    const inv = inventory('  session_store: redis\n  redis_url: redis://:pw@10.0.0.5:6379/0\n  env: {SESSION_SECRET: s3cret, SESSION_MAX_BYTES: "1000"}');
    const inst = inv.instances[0]!;
    const env = serviceEnv(inst, layoutOf(inst.deployTo), {}, inv.app);
    expect(env).toMatchObject({ SESSION_STORE: 'redis', REDIS_URL: 'redis://:pw@10.0.0.5:6379/0', SESSION_SECRET: 's3cret', SESSION_MAX_BYTES: '1000', LOCKSTEP_APP_ENV_KEYS: 'SESSION_MAX_BYTES,SESSION_SECRET' });
    // Transports log a command's first line only: it must not carry the URL's password or a secret.
    const logged = commandSummary(buildScript('bin/service restart', { env }));
    expect(logged).not.toContain('pw');
    expect(logged).not.toContain('s3cret');
    // Without the inventory's app section (hand-run service commands): the contract only.
    expect(serviceEnv(inst, layoutOf(inst.deployTo)).SESSION_STORE).toBeUndefined();
    expect(inventory('').app.session_store).toBe('local');
  });

  it('the proxy moves sticky clients of a drained instance at once when sessions are shared', () => {
    const hold = (app: string, proxy = '') => resolveProxyConfig(proxyConfigFromInventory(inventory(app, proxy), SECRETS)).hold;
    expect(hold('').sessionsShared).toBe(false);
    expect(hold('  session_store: redis\n  redis_url: redis://127.0.0.1:6379/0').sessionsShared).toBe(true);
    expect(hold('  session_store: redis\n  redis_url: redis://127.0.0.1:6379/0', '  sessions_shared: false').sessionsShared).toBe(false);
    expect(hold('', '  sessions_shared: true').sessionsShared).toBe(true);
  });
});

describe('the app config fingerprint', () => {
  const base = { SESSION_STORE: 'redis', REDIS_URL: 'redis://:pw@10.0.0.5:6379/0', SESSION_SECRET: 'top-secret-value', LOCKSTEP_APP_ENV_KEYS: 'FEATURE_X', FEATURE_X: 'on' };
  const fp = (env: Record<string, string>) => configFingerprint(loadConfig(env), env);

  it('is a sha256 that changes with the secrets, the store URL and app.env, never with per-instance values', () => {
    const ref = fp(base);
    expect(ref).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(fp({ ...base, HOST: '10.0.0.9', PORT: '4999', DATA_DIR: '/srv/other', LOCKSTEP_INSTANCE: 'web-9', LOG_LEVEL: 'debug', NODE_ENV: 'test' })).toBe(ref);
    expect(fp({ ...base, SESSION_SECRET: 'another' })).not.toBe(ref);
    expect(fp({ ...base, REDIS_URL: 'redis://:pw@10.0.0.6:6379/0' })).not.toBe(ref);
    expect(fp({ ...base, FEATURE_X: 'off' })).not.toBe(ref);
    expect(fp({ ...base, SESSION_STORE: 'local' })).not.toBe(ref);
    expect(fp({ ...base, SESSION_MAX_BYTES: '5' })).not.toBe(ref);
    expect(ref).not.toContain('top-secret');
  });
});

describe('drift: config fingerprint and session store', () => {
  function row(instance: string, fp: string | null, store: string | null = 'redis'): InstanceDrift {
    return {
      instance,
      status: 'ok',
      current: { target: null, release: null, digest: null },
      running: { release: 'r', digest: 'd', pid: 1, session_store: store, config_fingerprint: fp },
      healthy: true,
      proxy: null,
      lock: null,
      items: [],
    };
  }
  const X = `sha256:${'a'.repeat(64)}`;
  const Y = `sha256:${'b'.repeat(64)}`;

  it('flags the one instance whose fingerprint differs from the others', () => {
    const rows = [row('web-1', X), row('web-2', Y), row('web-3', X)];
    expect(addConfigDriftItems(rows, 'redis')).toBe(X);
    expect(rows.map((r) => r.status)).toEqual(['ok', 'drift', 'ok']);
    expect(rows[1]!.items.map((i) => i.kind)).toEqual(['config-fingerprint']);
    expect(rows[1]!.items[0]!.message).toContain(`differs from the other instances' ${X.slice(0, 19)}`);
  });

  it('with no majority, names every instance; one fingerprint everywhere is no drift', () => {
    const split = [row('web-1', X), row('web-2', Y)];
    expect(addConfigDriftItems(split, 'redis')).toBeNull();
    expect(split.map((r) => r.status)).toEqual(['drift', 'drift']);
    const same = [row('web-1', X), row('web-2', X), row('web-3', null)];
    expect(addConfigDriftItems(same, 'redis')).toBe(X);
    expect(same.every((r) => r.status === 'ok')).toBe(true);
  });

  it('flags a process running another session store than the inventory says', () => {
    const rows = [row('web-1', X, 'local'), row('web-2', X, 'redis'), row('web-3', X, null)];
    addConfigDriftItems(rows, 'redis');
    expect(rows.map((r) => r.items.map((i) => i.kind))).toEqual([['session-store'], [], []]);
  });
});
