// Issue 12 items 4, 8 and 9 on real sshd hosts running the real app: fleet retention, leftovers
// of killed deploys, the free-space preflight on a real small filesystem, service commands
// written with shell syntax, a deploy user with umask 027, re-deploying a digest under a new
// release id, and the audit history. Addresses 127.0.0.121-123 and 127.0.0.131-132.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRelease } from '../../deployer/build/build.ts';
import { artifactsDir } from '../../deployer/build/release-source.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { HistoryEntry } from '../../deployer/fleet/history.ts';
import { currentOnDisk, repoRoot, startE2eFleet, versionOf, type E2eFleet } from './support.ts';

const REVISION = '0123456789abcdef0123456789abcdef01234567';

/** A variant of the real app: `good`, `fails-on-ssh-3` (unhealthy there only) or `hook-fails` (before_activate refuses it). */
type Variant = 'good' | 'fails-on-ssh-3' | 'hook-fails';

/**
 * Build the real app once and package variants, each with its own digest and release id; a
 * `same-as` entry repackages an earlier variant's files under a later source time (same digest,
 * new release id). @returns release ids in order.
 */
async function makeVariants(inventory: Inventory, specs: (Variant | { sameAs: number })[]): Promise<string[]> {
  const base = mkdtempSync(join(tmpdir(), 'lockstep-hyg-'));
  const built = join(base, 'built');
  execFileSync(process.execPath, [join(repoRoot, 'app/build.mjs'), '--out', built]);
  const ids: string[] = [];
  const dirs: string[] = [];
  for (const [n, spec] of specs.entries()) {
    let dir: string;
    if (typeof spec === 'object') dir = dirs[spec.sameAs]!;
    else {
      dir = join(base, `v${n}`);
      cpSync(built, dir, { recursive: true });
      writeFileSync(join(dir, 'public', 'variant.txt'), `variant ${n}\n`);
      if (spec === 'hook-fails') writeFileSync(join(dir, 'public', 'fail-hook.txt'), 'the before_activate hook refuses this release\n');
      if (spec === 'fails-on-ssh-3') {
        renameSync(join(dir, 'server', 'index.mjs'), join(dir, 'server', 'real.mjs'));
        writeFileSync(
          join(dir, 'server', 'index.mjs'),
          `// variant ${n}: unhealthy on ssh-3 only (a late-batch failure)\nif (process.env.LOCKSTEP_INSTANCE === 'ssh-3') {\n  const http = await import('node:http');\n  http.createServer((q, r) => { r.statusCode = 500; r.end('broken on ssh-3'); }).listen(Number(process.env.PORT), process.env.HOST);\n} else {\n  await import('./real.mjs');\n}\n`,
        );
      }
    }
    dirs.push(dir);
    const minute = String(10 + n).padStart(2, '0');
    const r = await packageRelease(dir, artifactsDir(inventory), { revision: REVISION, dirty: false, time: `2026-11-30T10:${minute}:00Z`, pinned: true });
    ids.push(r.release);
  }
  return ids;
}

let fleet: E2eFleet;
let g1 = '', g2 = '', hookBad = '', x3 = '', g4 = '', g5 = '', g5again = '';

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', fleet.inventory.file], { encoding: 'utf8', timeout: 180_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const releasesOn = (deployTo: string) => readdirSync(join(deployTo, 'releases')).sort();
/** Every host's release dirs (hidden ones included): equal on every host. */
function expectSameReleaseSet(): string[] {
  const sets = fleet.ssh.hosts.map((h) => releasesOn(h.deployTo));
  for (const s of sets) expect(s).toEqual(sets[0]);
  return sets[0]!;
}
const currents = () => fleet.ssh.hosts.map((h) => currentOnDisk(h.deployTo));
const all = (id: string) => fleet.ssh.hosts.map(() => `releases/${id}`);

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.121', {
    proxy: false,
    // Every session on these hosts runs with umask 027 (a common hardened deploy user).
    umask: '027',
    app: {
      // Operator-written shell: an if/fi, then two commands; every part needs the environment.
      service: {
        start: 'bin/service start',
        stop: 'if [ -x bin/service ]; then bin/service stop; fi',
        restart: 'if [ -z "$LOCKSTEP_INSTANCE" ]; then echo "no LOCKSTEP_INSTANCE" >&2; exit 9; fi; bin/service stop; bin/service start',
      },
    },
    deploy: {
      keep_releases: 3,
      batch_size: 1,
      activation_timeout_ms: 8000,
      hooks: { before_activate: 'if [ -f public/fail-hook.txt ]; then echo "migration check refused this release" >&2; exit 7; fi' },
    },
  });
  [g1, g2, hookBad, x3, g4, g5, g5again] = (await makeVariants(fleet.inventory, ['good', 'good', 'hook-fails', 'fails-on-ssh-3', 'good', 'good', { sameAs: 5 }])) as string[] as [string, string, string, string, string, string, string];
}, 240_000);
afterAll(async () => {
  await fleet?.stop();
});

describe('service commands, umask and re-deploys (item 8)', () => {
  it('shell-syntax service commands get the environment: each app binds its own address and knows its name (umask 027)', async () => {
    const r = await deploy(fleet.inventory, { release: g1 });
    expect(r.failure).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(currents()).toEqual(all(g1));
    for (const [i, h] of fleet.ssh.hosts.entries()) {
      const v = await versionOf(fleet.inventory.instances[i]!.url);
      expect(v.instance).toBe(h.name);
      expect(v.release).toBe(g1);
    }
  }, 120_000);
});

describe('history an auditor can use (item 9)', () => {
  it('records -m, who, where, source commit and outcome; a failed before_activate hook is recorded', async () => {
    const viaCli = cli(['deploy', '--release', g2, '--no-verify', '--no-proxy', '-m', 'ticket 42: new charts']);
    expect(viaCli.status).toBe(0);
    const hook = await deploy(fleet.inventory, { release: hookBad, message: 'try the migration' });
    expect(hook.ok).toBe(false);
    expect(hook.phase).toBe('prepare');
    expect(currents()).toEqual(all(g2));

    const json = cli(['history', '--json']);
    expect(json.status).toBe(0);
    const entries = JSON.parse(json.stdout) as HistoryEntry[];
    const activations = entries.filter((e) => e.release === g2 && e.event === 'activate');
    expect(activations.map((e) => e.instance).sort()).toEqual(['ssh-1', 'ssh-2', 'ssh-3']);
    for (const e of activations) {
      expect(e).toMatchObject({ operation: 'deploy', outcome: 'ok', message: 'ticket 42: new charts', source: { revision: REVISION, dirty: false }, previous: g1 });
      expect(e.user).toBeTruthy();
      expect(e.machine).toBeTruthy();
    }
    const hookFailures = entries.filter((e) => e.release === hookBad);
    expect(hookFailures.map((e) => e.instance).sort()).toEqual(['ssh-1', 'ssh-2', 'ssh-3']);
    for (const e of hookFailures) {
      expect(e).toMatchObject({ event: 'failed', outcome: 'failed', hook: 'before_activate', message: 'try the migration', source: { revision: REVISION } });
      expect(e.error).toContain('migration check refused this release');
    }
    const table = cli(['history']);
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/operation.*outcome.*source.*by.*note/);
    expect(table.stdout).toContain('ticket 42: new charts');
    expect(table.stdout).toContain('before_activate hook failed');
    expect(table.stdout).toContain(REVISION.slice(0, 12));
  }, 240_000);
});

describe('retention is a fleet decision (item 4)', () => {
  it('deploys, a late-batch failure and rollbacks leave the same release set on every host; `lockstep rollback` works', async () => {
    // x3 passes on ssh-1 and ssh-2 and fails on ssh-3 (the last batch): all go back to g2.
    const late = await deploy(fleet.inventory, { release: x3 });
    expect(late.ok).toBe(false);
    expect(currents()).toEqual(all(g2));

    // Leftovers of a killed upload and a failed unpack on ssh-2.
    const h2 = fleet.ssh.host('ssh-2').deployTo;
    writeFileSync(join(h2, 'artifacts', `${'e'.repeat(64)}.tar.gz.part`), Buffer.alloc(300_000));
    mkdirSync(join(h2, 'releases', `.staging-${g4}`, 'server'), { recursive: true });
    writeFileSync(join(h2, 'releases', `.staging-${g4}`, 'server', 'half.mjs'), 'partial');
    const lines: string[] = [];
    const r4 = await deploy(fleet.inventory, { release: g4, progress: (i, l) => lines.push(`[${i}] ${l}`) });
    expect(r4.ok).toBe(true);
    expect(existsSync(join(h2, 'artifacts', `${'e'.repeat(64)}.tar.gz.part`))).toBe(false);
    expect(readdirSync(join(h2, 'releases')).filter((f) => f.startsWith('.'))).toEqual([]);
    expect(lines.some((l) => l.startsWith('[ssh-2] removed leftovers of killed deploys'))).toBe(true);
    // keep 3: the failed ones (hookBad everywhere, x3 failed on ssh-3) went first, on every host.
    expect(expectSameReleaseSet()).toEqual([g1, g2, g4].sort());

    const back = cli(['rollback', '--no-proxy', '-m', 'charts broken']);
    expect(back.status).toBe(0);
    expect(currents()).toEqual(all(g2));

    const r5 = await deploy(fleet.inventory, { release: g5 });
    expect(r5.ok).toBe(true);
    expect(expectSameReleaseSet()).toEqual([g2, g4, g5].sort());
    const back2 = cli(['rollback', '--no-proxy']);
    expect(back2.status).toBe(0);
    expect(currents()).toEqual(all(g2));
    expect(expectSameReleaseSet()).toContain(g2);
  }, 400_000);

  it('the same digest under a new release id is not uploaded again', async () => {
    const r = await deploy(fleet.inventory, { release: g5again });
    expect(r.ok).toBe(true);
    expect(r.instances.map((i) => i.uploadedBytes)).toEqual([0, 0, 0]);
    expect(currents()).toEqual(all(g5again));
  }, 120_000);
});

describe('free-space preflight (item 4)', () => {
  let small: E2eFleet | undefined;
  let mounted = '';
  afterAll(async () => {
    if (mounted) spawnSync('umount', [mounted]);
    await small?.stop();
  });

  it('a host whose filesystem cannot take the release fails preflight naming host, free and needed bytes; nothing changes', async () => {
    small = await startE2eFleet(2, '127.0.0.131', { proxy: false });
    const target = small.ssh.host('ssh-2').deployTo;
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', target], { encoding: 'utf8' });
    expect(m.stderr).toBe('');
    mounted = target;
    const manifest = join(artifactsDir(fleet.inventory), `${g1}.manifest.json`);
    const r = await deploy(small.inventory, { release: manifest });
    expect(r.ok).toBe(false);
    expect(r.phase).toBe('preflight');
    expect(r.state).toBe('no instance was changed');
    expect(r.failure).toMatch(/not enough free space on ssh-2 for .* [\d,]+ bytes free, [\d,]+ bytes needed \(artifact [\d,]+ bytes \+ unpacked release [\d,]+ bytes \+ margin 104,857,600 bytes/);
    expect(r.failure).not.toContain('ssh-1');
    for (const h of small.ssh.hosts) expect(readdirSync(h.deployTo)).toEqual([]);
  }, 120_000);
});
