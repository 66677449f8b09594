// Hooks and --dry-run with the real app on local-transport instances (hooks are shell commands
// the same on either transport).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { openFleet } from '../../deployer/fleet/fleet.ts';
import { loadInventory } from '../../config/inventory.ts';
import { freePort } from '../helpers/sshd.ts';
import { realAppSection, repoRoot } from './support.ts';

let dir: string;
let release: string;

function writeInventory(hooks: Record<string, string>): string {
  const file = join(dir, `inventory-${Object.keys(hooks).join('-') || 'plain'}.yaml`);
  writeFileSync(
    file,
    stringify({
      app: realAppSection(join(dir, 'build')),
      deploy: { activation_timeout_ms: 15000, stability_window_ms: 0, hooks },
      instances: ports.map((p, i) => ({ name: `inst-${i + 1}`, transport: 'local', deploy_to: `fleet/inst-${i + 1}`, app_port: p })),
    }),
  );
  return file;
}
let ports: number[] = [];

function cli(file: string, args: string[]) {
  return spawnSync(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', file], { encoding: 'utf8', timeout: 120_000 });
}
const current = (n: number) => existsSync(join(dir, 'fleet', `inst-${n}`, 'current'));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-hooks-'));
  ports = [await freePort('127.0.0.1'), await freePort('127.0.0.1')];
  const built = cli(writeInventory({}), ['build', '--json']);
  expect(built.status).toBe(0);
  release = (JSON.parse(built.stdout) as { release: string }).release;
});
afterAll(async () => {
  const fleet = openFleet(loadInventory(writeInventory({})));
  await fleet.each((o) => o.stopApp());
  await fleet.close();
});

describe('dry run and hooks', () => {
  it('--dry-run prints the plan and changes nothing', () => {
    const r = cli(writeInventory({}), ['deploy', '--release', release, '--dry-run']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`dry run: deploy ${release}; nothing was changed`);
    expect(r.stdout).toMatch(/inst-1 +- +upload +unpack \+ verify +activate/);
    expect(r.stdout).toContain('batches: 1) inst-1  2) inst-2');
    expect(existsSync(join(dir, 'fleet', 'inst-1', 'releases'))).toBe(false);
  });

  it('a failing pre_deploy hook stops the deploy before anything changes', () => {
    const r = cli(writeInventory({ pre_deploy: 'echo "migrations pending" >&2; exit 4' }), ['deploy', '--release', release]);
    expect(r.status).toBe(3);
    expect(r.stdout).toContain('FAILED in phase pre-deploy');
    expect(r.stdout).toContain('pre_deploy hook `echo "migrations pending" >&2; exit 4` failed (exit 4): migrations pending');
    expect(r.stdout).toContain('state: no instance was changed');
    expect(existsSync(join(dir, 'fleet', 'inst-1', 'releases'))).toBe(false);
  });

  it('a failing before_activate hook on one instance activates no instance', () => {
    const r = cli(writeInventory({ before_activate: 'test "$LOCKSTEP_INSTANCE" != inst-2' }), ['deploy', '--release', release]);
    expect(r.status).toBe(3);
    expect(r.stdout).toContain('FAILED in phase prepare');
    expect(r.stdout).toMatch(/inst-2: before_activate hook failed on inst-2 \(exit 1\)/);
    expect([current(1), current(2)]).toEqual([false, false]);
  });

  it('hooks run with the release, digest and instance in their environment', () => {
    const log = join(dir, 'hooks.log');
    const line = (hook: string) => `echo "${hook} $LOCKSTEP_HOOK $LOCKSTEP_RELEASE $LOCKSTEP_DIGEST \${LOCKSTEP_INSTANCE:-local} $(pwd -P)" >> ${log}`;
    const r = cli(
      writeInventory({ pre_deploy: line('pre'), before_activate: line('before'), after_activate: line('after'), post_deploy: line('post') }),
      ['deploy', '--release', release, '--no-verify'],
    );
    expect(r.status).toBe(0);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    const digest = JSON.parse(readFileSync(join(dir, 'fleet', 'inst-1', 'current', 'manifest.json'), 'utf8')).digest as string;
    expect(lines[0]).toBe(`pre pre_deploy ${release} ${digest} local ${dir}`);
    expect(lines.filter((l) => l.startsWith('before before_activate'))).toHaveLength(2);
    expect(lines).toContain(`before before_activate ${release} ${digest} inst-2 ${join(dir, 'fleet', 'inst-2', 'releases', release)}`);
    expect(lines).toContain(`after after_activate ${release} ${digest} inst-1 ${join(dir, 'fleet', 'inst-1', 'releases', release)}`);
    expect(lines.at(-1)).toBe(`post post_deploy ${release} ${digest} local ${dir}`);
    expect([current(1), current(2)]).toEqual([true, true]);
  });
});
