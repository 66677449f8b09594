import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../config/inventory.ts';
import { ConfigError } from '../../config/errors.ts';

const repo = resolve(import.meta.dirname, '..', '..');

const valid = `app:
  build: {command: "true", output: out}
  service: {start: a, stop: b, restart: c}
instances:
  - name: one
    transport: local
    deploy_to: fleet/one
    app_port: 4001
  - name: two
    transport: ssh
    host: 127.0.0.12
    deploy_to: /srv/app
    app_port: 4001
`;

function configError(text: string): ConfigError {
  try {
    parseInventory(text, 'fleet.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('inventory', () => {
  it('applies defaults and resolves paths', () => {
    const inv = parseInventory(valid, '/etc/lockstep/fleet.yaml');
    expect(inv.instances.map((i) => i.name)).toEqual(['one', 'two']);
    expect(inv.instances[0]!.deployTo).toBe('/etc/lockstep/fleet/one');
    expect(inv.instances[1]!.url).toBe('http://127.0.0.12:4001');
    expect(inv.instances[1]!.sshPort).toBe(22);
    expect(inv.app.health_path).toBe('/healthz');
    expect(inv.deploy.keep_releases).toBe(5);
  });

  it('names file, line and field for a missing field', () => {
    const e = configError(valid.replace('    app_port: 4001\n  - name: two', '  - name: two'));
    expect(e.location).toMatchObject({ file: 'fleet.yaml', field: 'instances[0].app_port' });
    expect(e.message).toContain('fleet.yaml:5');
    expect(e.message).toContain('missing');
  });

  it('names file, line and field for a wrong type', () => {
    const e = configError(valid.replace('app_port: 4001\n  - name: two', 'app_port: "forty"\n  - name: two'));
    expect(e.location).toMatchObject({ file: 'fleet.yaml', line: 8, field: 'instances[0].app_port' });
    expect(e.message).toMatch(/expected number/);
  });

  it('names the duplicate instance name and its line', () => {
    const e = configError(valid.replace('name: two', 'name: one'));
    expect(e.location).toMatchObject({ file: 'fleet.yaml', line: 9, field: 'instances[1].name' });
    expect(e.message).toContain('duplicate instance name "one"');
  });

  it('rejects unknown keys and ssh instances without a host', () => {
    expect(configError(valid.replace('app_port: 4001\n  - name: two', 'app_port: 4001\n    colour: red\n  - name: two')).message).toContain('unknown key(s) "colour"');
    expect(configError(valid.replace('    host: 127.0.0.12\n', '')).location.field).toBe('instances[1].host');
  });

  it('the CLI exits 2 with one clear line and no stack trace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockstep-inv-'));
    const file = join(dir, 'inventory.yaml');
    writeFileSync(file, valid.replace('name: two', 'name: one'));
    const r = spawnSync(process.execPath, [join(repo, 'bin/lockstep.mjs'), 'build', '--inventory', file], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${file}:9: field "instances[1].name": duplicate instance name "one"`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
