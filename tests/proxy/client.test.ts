import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ProxyAdminClient, ProxyAdminError, proxyClientFromInventory } from '../../deployer/balancer/admin-client.ts';
import { parseInventory } from '../../config/inventory.ts';
import type { RunningProxy } from '../../proxy/index.ts';
import { proxyConfigFromInventory } from '../../proxy/inventory-config.ts';
import { ADMIN_TOKEN, startTestProxy, startUpstream, type TestUpstream, closeAll } from './helpers.ts';

let upstreams: TestUpstream[] = [];
let proxy: RunningProxy | undefined;

afterEach(async () => {
  [proxy, upstreams] = await closeAll(proxy, upstreams);
});

const INVENTORY = `
app:
  build: { command: "true", output: dist }
  service: { start: "true", stop: "true", restart: "true" }
  checks: { upload_paths: [/api/upload, /api/v1/data-analysis/upload] }
proxy:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  admin_token_file: secrets/admin-token
  health_check: { interval_ms: 500, timeout_ms: 300, rise: 3, fall: 4 }
instances:
  - { name: i1, transport: local, deploy_to: fleet/i1, app_port: 4101 }
  - { name: i2, transport: local, deploy_to: fleet/i2, app_port: 4102 }
`;

describe('deployer proxy client', () => {
  it('lists, drains, disables and enables through the admin API', async () => {
    upstreams = await Promise.all(['a', 'b'].map((n) => startUpstream(n)));
    proxy = await startTestProxy(upstreams);
    const client = new ProxyAdminClient(proxy.adminUrl, ADMIN_TOKEN);
    expect((await client.listInstances()).map((i) => [i.name, i.state, i.healthy])).toEqual([
      ['a', 'enabled', true],
      ['b', 'enabled', true],
    ]);
    expect(await client.drain('a', { waitMs: 1000 })).toEqual({ name: 'a', state: 'draining', drained: true, inflight: 0 });
    expect((await client.disable('b')).state).toBe('disabled');
    expect((await client.enable('a')).state).toBe('enabled');
    expect(await client.metrics()).toContain('lockstep_proxy_instance_state');
    const err = await client.drain('nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyAdminError);
    expect((err as ProxyAdminError).status).toBe(404);
  });

  it('throws a typed error naming the proxy URL for a wrong token and when unreachable', async () => {
    upstreams = [await startUpstream('a')];
    proxy = await startTestProxy(upstreams);
    const wrong = await new ProxyAdminClient(proxy.adminUrl, 'not-the-token').listInstances().catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(ProxyAdminError);
    expect((wrong as ProxyAdminError).code).toBe('LOCKSTEP_PROXY');
    expect((wrong as ProxyAdminError).exitCode).toBe(3);
    expect((wrong as ProxyAdminError).message).toContain(proxy.adminUrl);
    expect((wrong as ProxyAdminError).message).toContain('401');

    const adminUrl = proxy.adminUrl;
    await proxy.close();
    proxy = undefined;
    const down = await new ProxyAdminClient(adminUrl, ADMIN_TOKEN).listInstances().catch((e: unknown) => e);
    expect(down).toBeInstanceOf(ProxyAdminError);
    expect((down as ProxyAdminError).message).toContain(adminUrl);
    expect((down as ProxyAdminError).message).toContain('unreachable');
  });
});

describe('proxy configuration from the inventory', () => {
  it('maps listen addresses, health checks and instances, and creates both secret files (0600)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-proxy-inv-'));
    const file = join(dir, 'inventory.yaml');
    writeFileSync(file, INVENTORY);
    const inv = parseInventory(INVENTORY, file);
    const cfg = proxyConfigFromInventory(inv, {});
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(cfg.adminListen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(cfg.upstreams).toEqual([
      { name: 'i1', url: 'http://127.0.0.1:4101', weight: 1 },
      { name: 'i2', url: 'http://127.0.0.1:4102', weight: 1 },
    ]);
    expect(cfg.healthPath).toBe('/healthz');
    expect(cfg.healthCheck).toEqual({ intervalMs: 500, timeoutMs: 300, rise: 3, fall: 4 });
    expect(cfg.uploadPaths).toEqual(['/api/upload', '/api/v1/data-analysis/upload']);
    const tokenFile = join(dir, 'secrets/admin-token');
    const secretFile = join(dir, 'secrets/affinity-secret');
    expect(readFileSync(tokenFile, 'utf8').trim()).toBe(cfg.adminToken);
    expect(cfg.adminToken).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(secretFile, 'utf8').trim()).toBe(cfg.affinitySecret);
    expect(cfg.affinitySecret).not.toBe(cfg.adminToken);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    // Second time: the same secrets are read back, not regenerated.
    expect(proxyConfigFromInventory(inv, {}).adminToken).toBe(cfg.adminToken);
    // The deployer's client finds the same token.
    const client = proxyClientFromInventory(inv, {});
    expect(client.adminUrl).toBe('http://127.0.0.1:0');
  });

  it('prefers the environment variables for both secrets', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-proxy-inv-'));
    const inv = parseInventory(INVENTORY, join(dir, 'inventory.yaml'));
    const env = { LOCKSTEP_ADMIN_TOKEN: 'env-token-0123456789abcdef', LOCKSTEP_AFFINITY_SECRET: 'env-secret-0123456789abcdef' };
    const cfg = proxyConfigFromInventory(inv, env);
    expect(cfg.adminToken).toBe(env.LOCKSTEP_ADMIN_TOKEN);
    expect(cfg.affinitySecret).toBe(env.LOCKSTEP_AFFINITY_SECRET);
    expect(() => statSync(join(dir, 'secrets/admin-token'))).toThrow();
  });
});
