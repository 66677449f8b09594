// The inventory's proxy keys reach the proxy's resolved configuration unchanged.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../config/inventory.ts';
import { resolveProxyConfig } from '../../proxy/config.ts';
import { proxyConfigFromInventory } from '../../proxy/inventory-config.ts';

const yaml = `app:
  build: {command: "true", output: out}
  service: {start: a, stop: b, restart: c}
proxy:
  listen: 127.0.0.1:18080
  admin_listen: 127.0.0.1:18081
  balance: least_connections
  connect_timeout_ms: 1500
  response_timeout_ms: 9000
  idle_timeout_ms: 20000
  upstream_keepalive_ms: 10000
  retries: 2
  hold_timeout_ms: 3000
  eject_after_failures: 0
  trusted_proxies: [10.0.0.0/8]
instances:
  - {name: a, transport: local, deploy_to: a, app_port: 4001, weight: 3, max_connections: 50}
  - {name: b, transport: local, deploy_to: b, app_port: 4002}
`;

describe('proxy configuration from the inventory', () => {
  it('maps every proxy key and per-instance weight and limit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-pinv-'));
    const inv = parseInventory(yaml, join(dir, 'inventory.yaml'));
    const env = { LOCKSTEP_ADMIN_TOKEN: 'a'.repeat(32), LOCKSTEP_AFFINITY_SECRET: 'b'.repeat(32) };
    const cfg = resolveProxyConfig(proxyConfigFromInventory(inv, env));
    expect(cfg.listen).toEqual({ host: '127.0.0.1', port: 18080 });
    expect(cfg.balance).toBe('least_connections');
    expect(cfg.versionPath).toBe('/version');
    expect(cfg.healthPath).toBe('/healthz');
    expect(cfg.timeouts).toMatchObject({ connectMs: 1500, responseMs: 9000, idleMs: 20000, upstreamIdleMs: 10000 });
    expect(cfg.retries.maxAttempts).toBe(2);
    expect(cfg.hold.timeoutMs).toBe(3000);
    expect(cfg.passiveEjection.consecutiveFailures).toBe(0);
    expect(cfg.trustedProxies?.check('10.1.2.3')).toBe(true);
    expect(cfg.trustedProxies?.check('192.0.2.1')).toBe(false);
    expect(cfg.upstreams).toEqual([
      { name: 'a', url: 'http://127.0.0.1:4001', weight: 3, maxConnections: 50 },
      { name: 'b', url: 'http://127.0.0.1:4002', weight: 1 },
    ]);
  });
});
