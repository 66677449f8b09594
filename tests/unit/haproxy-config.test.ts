// The HAProxy engine's rendered config, checked by the real haproxy (`haproxy -c`): a 3-instance
// inventory gives a valid config with every inventory setting in it; a broken one is refused with
// haproxy's own message naming the file, and the running config is left as it was.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.ts';
import { parseInventory } from '../../config/inventory.ts';
import { cookieValue, haproxyPaths, renderHaproxyConfig, validateHaproxyConfig, writeHaproxyConfig } from '../../proxy/haproxy/config.ts';
import { haproxyPlanFromInventory } from '../../proxy/haproxy/supervisor.ts';

const HAPROXY = '/usr/sbin/haproxy';
const yaml = `app:
  build: {command: "true", output: out}
  service: {start: a, stop: b, restart: c}
  health_path: /ready
proxy:
  engine: haproxy
  listen: 127.0.10.1:18080
  balance: least_connections
  connect_timeout_ms: 1500
  response_timeout_ms: 9000
  retries: 2
  hold_timeout_ms: 3000
  health_check: {interval_ms: 300, timeout_ms: 700, rise: 3, fall: 4}
  haproxy: {run_dir: hx}
instances:
  - {name: web-1, transport: local, deploy_to: a, app_port: 4101, weight: 3, max_connections: 50}
  - {name: web-2, transport: local, deploy_to: b, app_port: 4102}
  - {name: web-3, transport: local, deploy_to: c, app_port: 4103}
`;
const env = { LOCKSTEP_ADMIN_TOKEN: 'a'.repeat(32), LOCKSTEP_AFFINITY_SECRET: 'b'.repeat(32) };

describe('HAProxy config from the inventory', () => {
  it('renders a config that haproxy -c accepts, with servers, checks, stickiness, timeouts and the stats socket', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-hxcfg-'));
    const plan = haproxyPlanFromInventory(parseInventory(yaml, join(dir, 'inventory.yaml')), env);
    expect(plan.runDir).toBe(join(dir, 'hx'));
    const file = writeHaproxyConfig(plan, (f) => validateHaproxyConfig(HAPROXY, f));
    const text = readFileSync(file, 'utf8');
    const p = haproxyPaths(plan.runDir);
    expect(text).toContain(`stats socket ${p.socket} mode 600 level admin`);
    expect(text).toContain(`server-state-file ${p.state}`);
    expect(text).toContain('load-server-state-from-file global');
    expect(text).toContain('bind 127.0.10.1:18080');
    expect(text).toContain('balance leastconn');
    expect(text).toContain('option httpchk GET /ready');
    expect(text).toContain('http-check expect status 200');
    expect(text).toContain('default-server check inter 300ms rise 3 fall 4');
    expect(text).toContain('timeout check 700ms');
    expect(text).toContain('timeout connect 1500ms');
    expect(text).toContain('timeout server 9000ms');
    expect(text).toContain('retries 1');
    expect(text).toContain('cookie lockstep_affinity insert indirect nocache httponly');
    const web1 = cookieValue('b'.repeat(32), 'web-1');
    expect(text).toContain(`server web-1 127.0.0.1:4101 cookie ${web1} weight 3 maxconn 50`);
    expect(text).toMatch(/server web-2 127\.0\.0\.1:4102 cookie [0-9a-f]{16} weight 1\n/);
    expect(text).toMatch(/server web-3 /);
    // The cookie does not name the instance.
    expect(web1).not.toContain('web');
    expect(readFileSync(p.lua, 'utf8')).toContain(`[${JSON.stringify(web1)}] = "web-1"`);
  });

  it('a config haproxy refuses: exit-2 ConfigError with haproxy\'s message and the file; the last good config stays', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-hxcfg-'));
    const plan = haproxyPlanFromInventory(parseInventory(yaml, join(dir, 'inventory.yaml')), env);
    const good = writeHaproxyConfig(plan, (f) => validateHaproxyConfig(HAPROXY, f));
    const before = readFileSync(good, 'utf8');
    // Two servers with one name: valid for the renderer, refused by haproxy.
    const broken = { ...plan, servers: [...plan.servers, { ...plan.servers[0]!, port: 4199 }] };
    let err: unknown;
    try {
      writeHaproxyConfig(broken, (f) => validateHaproxyConfig(HAPROXY, f));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(2);
    expect((err as Error).message).toContain(`${good}.new is not a valid HAProxy configuration`);
    expect(existsSync(`${good}.new`)).toBe(false);
    expect((err as Error).message).toMatch(/web-1/);
    expect(readFileSync(good, 'utf8')).toBe(before);
    expect(renderHaproxyConfig(broken)).not.toBe(before);
  });

  it('a missing haproxy program is a ConfigError naming proxy.haproxy.bin', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-hxcfg-'));
    expect(existsSync(dir)).toBe(true);
    expect(() => validateHaproxyConfig(join(dir, 'no-haproxy'), join(dir, 'x.cfg'))).toThrow(/proxy.haproxy.bin/);
  });
});
