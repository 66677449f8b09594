// Drift on a running fleet of three real sshd hosts with the real app behind the real proxy:
// each kind of drift is injected by hand (as an operator or an accident would), found and
// named precisely by `scanDrift`, repaired by `repairDrift` without touching the other
// instances, and followed by a clean scan.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, readdirSync, readFileSync, rmSync, symlinkSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease } from '../../deployer/build/build.ts';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { repairDrift, type RepairReport } from '../../deployer/drift/repair.ts';
import { renderDriftText } from '../../deployer/drift/render.ts';
import { scanDrift } from '../../deployer/drift/scan.ts';
import type { DriftReport, InstanceDrift } from '../../deployer/drift/types.ts';
import { serviceEnv } from '../../deployer/fleet/instance.ts';
import type { Manifest } from '../../deployer/build/manifest.ts';
import { ProxyAdminClient, proxyClientFromInventory } from '../../deployer/balancer/admin-client.ts';
import { fleetStatus } from '../../deployer/fleet/status.ts';
import { freePort } from '../helpers/sshd.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { layoutOf } from '../../deployer/remote/layout.ts';
import { currentOnDisk, repoRoot, startE2eFleet, versionOf, type E2eFleet } from './support.ts';

let fleet: E2eFleet;
let A: Manifest; // the older release (the rollback target)
let B: Manifest; // the release the fleet should run
const progress = () => {};

function deployTo(name: string): string {
  return fleet.ssh.host(name).deployTo;
}
function relDir(name: string, m: Manifest): string {
  return join(deployTo(name), 'releases', m.release);
}
function row(r: DriftReport, name: string): InstanceDrift {
  return r.instances.find((i) => i.instance === name)!;
}
function kinds(r: DriftReport, name: string): string[] {
  return row(r, name).items.map((i) => i.kind).sort();
}
async function scan(): Promise<DriftReport> {
  return (await scanDrift(fleet.inventory)).report;
}
function historyLines(name: string): number {
  return readFileSync(join(deployTo(name), '.lockstep/history.jsonl'), 'utf8').split('\n').filter(Boolean).length;
}
/** Pid and history length of the instances a repair must not touch. */
async function fingerprint(names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    const inst = fleet.inventory.instances.find((i) => i.name === n)!;
    const v = (await versionOf(inst.url)) as { pid?: number };
    out.push(`${n} pid ${v.pid} history ${historyLines(n)} current ${currentOnDisk(deployTo(n))}`);
  }
  return out;
}
/** Scan, repair, and check the instances outside `drifted` were not touched and the fleet is clean after. */
async function repairAndExpectClean(drifted: string[]): Promise<RepairReport> {
  const others = fleet.inventory.instances.map((i) => i.name).filter((n) => !drifted.includes(n));
  const before = await fingerprint(others);
  const s = await scanDrift(fleet.inventory);
  const r = await repairDrift(fleet.inventory, s, { proxy: await proxyControlFor(fleet.inventory, progress), progress });
  expect(r.instances.filter((i) => i.state !== 'repaired').map((i) => `${i.instance}: ${i.error}`)).toEqual([]);
  expect(r.instances.map((i) => i.instance).sort()).toEqual([...drifted].sort());
  expect(r.verification?.ok).toBe(true);
  expect(r.after?.instances.flatMap((i) => i.items.map((x) => `${i.instance} ${x.kind}: ${x.message}`))).toEqual([]);
  expect(r.exitCode).toBe(0);
  expect(await fingerprint(others)).toEqual(before);
  return r;
}
function sh(command: string, env: Record<string, string> = {}): string {
  const r = spawnSync('sh', ['-c', command], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });
  if (r.status !== 0) throw new Error(`${command}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}
function envOf(name: string): Record<string, string> {
  const inst = fleet.inventory.instances.find((i) => i.name === name)!;
  return serviceEnv(inst, layoutOf(inst.deployTo));
}
/** Run the CLI in a child process, asynchronously: the proxy runs in this process and must keep answering. */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', fleet.inventory.file], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => done({ status, stdout, stderr }));
  });
}
/** A file of the release under public/ (static asset: editing it does not stop the app). */
function publicFile(m: Manifest, index = 0): string {
  return m.files.filter((f) => f.path.startsWith('public/'))[index]!.path;
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.31');
  const built = await buildRelease(fleet.inventory);
  A = built.manifest;
  // A second release of the same app: one more file in the build output, packaged again.
  writeFileSync(resolve(fleet.inventory.dir, fleet.inventory.app.build.output, 'RELEASE-NOTE.txt'), 'second release\n');
  B = (await buildRelease(fleet.inventory, { skipCommand: true })).manifest;
  for (const m of [A, B]) {
    const r = await deploy(fleet.inventory, { release: m.release, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    if (!r.ok) throw new Error(`deploy of ${m.release} failed: ${r.failure}`);
  }
});
afterAll(async () => {
  await fleet?.stop();
});

describe('lockstep drift on a running fleet', () => {
  it('a freshly deployed fleet has no drift; the rollback target is the previous release', async () => {
    expect(A.digest).not.toBe(B.digest);
    const r = await scan();
    expect(r.expected).toMatchObject({ release: B.release, digest: B.digest, from: 'history' });
    expect(r.rollbackTarget).toBe(A.release);
    expect(r.instances.map((i) => [i.instance, i.status, i.items])).toEqual([
      ['ssh-1', 'ok', []],
      ['ssh-2', 'ok', []],
      ['ssh-3', 'ok', []],
    ]);
    expect(r.proxy.status).toBe('ok');
    expect(r.exitCode).toBe(0);

    // --release names another expected release: every instance is reported on the other one.
    const older = (await scanDrift(fleet.inventory, { release: A.release })).report;
    expect(older.expected).toMatchObject({ release: A.release, digest: A.digest, from: 'option' });
    for (const n of ['ssh-1', 'ssh-2', 'ssh-3']) expect(kinds(older, n)).toEqual(['different-release']);
    expect(row(older, 'ssh-1').items[0]!.message).toContain(`current is ${B.release}`);
    expect(older.exitCode).toBe(1);
  });

  it('a file edited by hand in the active release: named with both hashes, replaced by a verified unpack', async () => {
    const path = publicFile(B);
    appendFileSync(join(relDir('ssh-1', B), path), '\n/* hot fix */\n');
    const r = await scan();
    expect(kinds(r, 'ssh-1')).toEqual(['files']);
    const item = row(r, 'ssh-1').items[0]!;
    expect(item.message).toContain(`changed ${path}`);
    expect(item.detail).toMatchObject({ missing: [], added: [], changed: [{ path, expected: B.files.find((f) => f.path === path)!.sha256, what: 'content' }] });
    expect([row(r, 'ssh-2').status, row(r, 'ssh-3').status]).toEqual(['ok', 'ok']);
    expect(r.exitCode).toBe(1);

    const rep = await repairAndExpectClean(['ssh-1']);
    expect(rep.instances[0]!.actions.join('\n')).toContain('unpacked afresh');
    // The hand-edited dir is kept aside, not deleted, and the process was restarted on the fresh one.
    expect(readdirSync(join(deployTo('ssh-1'), 'releases')).some((d) => d.startsWith(`.rejected-${B.release}`))).toBe(true);
    expect(readFileSync(join(relDir('ssh-1', B), path), 'utf8')).not.toContain('hot fix');
  });

  it('a file deleted and a stray file added: each named with its path', async () => {
    const gone = publicFile(B, 1);
    rmSync(join(relDir('ssh-2', B), gone));
    writeFileSync(join(relDir('ssh-3', B), 'public', 'debug.php'), '<?php phpinfo();\n');
    const r = await scan();
    expect(kinds(r, 'ssh-2')).toEqual(['files']);
    expect(row(r, 'ssh-2').items[0]!.detail).toMatchObject({ missing: [gone], added: [], changed: [] });
    expect(kinds(r, 'ssh-3')).toEqual(['files']);
    expect(row(r, 'ssh-3').items[0]!.detail).toMatchObject({ missing: [], added: ['public/debug.php'], changed: [] });
    expect(row(r, 'ssh-3').items[0]!.message).toContain('added public/debug.php');
    expect(row(r, 'ssh-1').status).toBe('ok');

    await repairAndExpectClean(['ssh-2', 'ssh-3']);
    expect(existsSync(join(relDir('ssh-2', B), gone))).toBe(true);
    expect(existsSync(join(relDir('ssh-3', B), 'public', 'debug.php'))).toBe(false);
  });

  it('current switched by hand to the older release (not restarted): other release on disk, process differs from disk', async () => {
    const link = join(deployTo('ssh-1'), 'current');
    symlinkSync(`releases/${A.release}`, `${link}.tmp`);
    renameSync(`${link}.tmp`, link);
    const r = await scan();
    expect(kinds(r, 'ssh-1')).toEqual(['different-release', 'process-digest']);
    const items = row(r, 'ssh-1').items;
    expect(items.find((i) => i.kind === 'different-release')!.detail).toMatchObject({ release: A.release, digest: A.digest, expected_release: B.release, expected_present: true });
    expect(items.find((i) => i.kind === 'process-digest')!.detail).toMatchObject({ disk_release: A.release, running: { release: B.release, digest: B.digest } });
    expect(row(r, 'ssh-1').current).toMatchObject({ release: A.release, digest: A.digest });

    await repairAndExpectClean(['ssh-1']);
    expect(currentOnDisk(deployTo('ssh-1'))).toBe(`releases/${B.release}`);
  });

  it('without a local build (e.g. a cron host): the manifest comes from the hosts and the repair re-unpacks from the host artifact', async () => {
    const dist = join(fleet.inventory.dir, 'dist', 'artifacts');
    renameSync(dist, `${dist}.away`);
    try {
      rmSync(join(relDir('ssh-2', B), publicFile(B, 2)));
      const s = await scanDrift(fleet.inventory);
      expect(s.localArtifact).toBeNull();
      expect(s.manifest?.digest).toBe(B.digest);
      expect(kinds(s.report, 'ssh-2')).toEqual(['files']);
      const rep = await repairAndExpectClean(['ssh-2']);
      const actions = rep.instances[0]!.actions.join('\n');
      expect(actions).toContain(`artifact of ${B.release} found on the host (sha256 verified)`);
      expect(actions).toContain('unpacked afresh');
      expect(actions).not.toContain('uploaded');
    } finally {
      renameSync(`${dist}.away`, dist);
    }
  });

  it('the app process killed: no process', async () => {
    const inst = fleet.inventory.instances.find((i) => i.name === 'ssh-2')!;
    const { pid } = (await versionOf(inst.url)) as unknown as { pid: number };
    process.kill(pid, 'SIGKILL');
    const r = await scan();
    expect(kinds(r, 'ssh-2')).toEqual(['process-down']);
    expect(row(r, 'ssh-2').items[0]!.message).toContain(`${inst.url}/version`);
    expect(row(r, 'ssh-2').running).toBeNull();

    await repairAndExpectClean(['ssh-2']);
    expect((await versionOf(inst.url)).digest).toBe(B.digest);
  });

  it("an old release's process left running on the port (started by its own service script) on two hosts: named with its pid, replaced one host at a time", async () => {
    const old = new Map<string, { pid?: number; digest?: string }>();
    for (const n of ['ssh-2', 'ssh-3']) {
      const env = envOf(n);
      sh(`cd ${deployTo(n)}/current && bin/service stop >/dev/null`, env);
      sh(`cd ${relDir(n, A)} && bin/service start >/dev/null`, { ...env, LOCKSTEP_RELEASE_DIR: relDir(n, A) });
      const inst = fleet.inventory.instances.find((i) => i.name === n)!;
      let v: { pid?: number; digest?: string } = {};
      for (let i = 0; i < 100 && v.digest !== A.digest; i++) {
        v = await versionOf(inst.url).catch(() => ({}));
        await new Promise((res) => setTimeout(res, 100));
      }
      expect(v.digest).toBe(A.digest);
      old.set(n, v);
    }
    const r = await scan();
    for (const n of ['ssh-2', 'ssh-3']) {
      expect(kinds(r, n)).toEqual(['process-digest']);
      expect(row(r, n).items[0]!.message).toContain(`(pid ${old.get(n)!.pid}) serves ${A.release}`);
      expect(row(r, n).items[0]!.message).toContain(`current on disk is ${B.release}`);
    }

    const lines: string[] = [];
    const s = await scanDrift(fleet.inventory);
    const rep = await repairDrift(fleet.inventory, s, { proxy: await proxyControlFor(fleet.inventory, progress), progress: (i, l) => void lines.push(`[${i}] ${l}`), verify: false });
    expect(rep.instances.map((i) => [i.instance, i.state])).toEqual([
      ['ssh-2', 'repaired'],
      ['ssh-3', 'repaired'],
    ]);
    // One host at a time: ssh-2 serves again before ssh-3 is drained and stopped.
    const ssh2Back = lines.findIndex((l) => l.startsWith('[ssh-2] now serving'));
    const ssh3Stop = lines.findIndex((l) => l.startsWith('[ssh-3] draining and stopping'));
    expect(ssh2Back).toBeGreaterThanOrEqual(0);
    expect(ssh3Stop).toBeGreaterThan(ssh2Back);
    expect(rep.after?.exitCode).toBe(0);
    for (const n of ['ssh-2', 'ssh-3']) {
      const now = (await versionOf(fleet.inventory.instances.find((i) => i.name === n)!.url)) as { pid?: number; digest: string };
      expect(now.digest).toBe(B.digest);
      expect(now.pid).not.toBe(old.get(n)!.pid);
    }
  });

  it('a stray process the service command did not start: repair says so, names the pid, and leaves it alone', async () => {
    const env = envOf('ssh-1');
    sh(`cd ${deployTo('ssh-1')}/current && bin/service stop >/dev/null`, env);
    // Started by hand, outside the service script: no pid file records it.
    sh(`cd ${relDir('ssh-1', A)} && setsid nohup node server/index.mjs </dev/null >/dev/null 2>&1 &`, env);
    const inst = fleet.inventory.instances.find((i) => i.name === 'ssh-1')!;
    let stray: { pid?: number; digest?: string } = {};
    for (let i = 0; i < 100 && stray.digest !== A.digest; i++) {
      stray = await versionOf(inst.url).catch(() => ({}));
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(stray.digest).toBe(A.digest);
    try {
      const s = await scanDrift(fleet.inventory);
      expect(kinds(s.report, 'ssh-1')).toEqual(['process-digest']);
      const r = await repairDrift(fleet.inventory, s, { proxy: await proxyControlFor(fleet.inventory, progress), progress, verify: false });
      expect(r.exitCode).toBe(3);
      const out = r.instances.find((i) => i.instance === 'ssh-1')!;
      expect(out.state).toBe('failed');
      expect(out.error).toContain(`pid ${stray.pid}`);
      expect(out.error).toContain('did not start it and cannot stop it');
      // Not killed by Lockstep, and the rollout did not run against it.
      expect(((await versionOf(inst.url)) as { pid?: number }).pid).toBe(stray.pid);
    } finally {
      process.kill(stray.pid!, 'SIGTERM');
    }
    for (let i = 0; i < 100 && (await versionOf(inst.url).catch(() => null)); i++) await new Promise((res) => setTimeout(res, 100));
    await repairAndExpectClean(['ssh-1']);
  });

  it('release directories deleted: the rollback target on one host, the active release and its artifact on another', async () => {
    rmSync(relDir('ssh-1', A), { recursive: true });
    rmSync(relDir('ssh-2', B), { recursive: true });
    rmSync(join(deployTo('ssh-2'), 'artifacts', `${B.digest}.tar.gz`));
    const r = await scan();
    expect(kinds(r, 'ssh-1')).toEqual(['rollback-target']);
    expect(row(r, 'ssh-1').items[0]!.message).toContain(`rollback target ${A.release} is absent`);
    // The process keeps running from the deleted directory, so only `current` is named.
    expect(kinds(r, 'ssh-2')).toEqual(['incomplete-current']);
    expect(row(r, 'ssh-2').items[0]!.message).toContain(`releases/${B.release} does not exist`);
    expect(row(r, 'ssh-3').status).toBe('ok');

    const rep = await repairAndExpectClean(['ssh-1', 'ssh-2']);
    expect(existsSync(relDir('ssh-1', A))).toBe(true);
    expect(rep.instances.find((i) => i.instance === 'ssh-2')!.actions.join('\n')).toMatch(/uploaded the artifact of .* B, sha256 verified/);
  });

  it('current pointing at something that is not a complete release: a staging dir, a release without manifest, a hand-edited manifest', async () => {
    // ssh-1: an interrupted unpack left a staging dir, and `current` was pointed at it.
    sh(`cp -a ${relDir('ssh-1', B)} ${deployTo('ssh-1')}/releases/.staging-${B.release} && ln -sfn releases/.staging-${B.release} ${deployTo('ssh-1')}/current.tmp && mv -Tf ${deployTo('ssh-1')}/current.tmp ${deployTo('ssh-1')}/current`);
    // ssh-2: manifest.json removed.
    rmSync(join(relDir('ssh-2', B), 'manifest.json'));
    // ssh-3: manifest.json edited to claim another digest.
    const mf = join(relDir('ssh-3', B), 'manifest.json');
    writeFileSync(mf, readFileSync(mf, 'utf8').replace(B.digest, 'f'.repeat(64)));
    const r = await scan();
    for (const n of ['ssh-1', 'ssh-2', 'ssh-3']) expect(kinds(r, n)).toEqual(['incomplete-current']);
    expect(row(r, 'ssh-1').items[0]!.detail).toMatchObject({ reason: 'staging', target: `releases/.staging-${B.release}` });
    expect(row(r, 'ssh-2').items[0]!.detail).toMatchObject({ reason: 'missing-manifest' });
    expect(row(r, 'ssh-2').items[0]!.message).toContain('has no manifest.json');
    expect(row(r, 'ssh-3').items[0]!.detail).toMatchObject({ reason: 'invalid-manifest' });
    expect(row(r, 'ssh-3').items[0]!.message).toContain('does not match its own file list');

    await repairAndExpectClean(['ssh-1', 'ssh-2', 'ssh-3']);
    expect(currentOnDisk(deployTo('ssh-1'))).toBe(`releases/${B.release}`);
    expect((JSON.parse(readFileSync(mf, 'utf8')) as Manifest).digest).toBe(B.digest);
  });

  it('an instance taken out of the proxy by hand (admin disable)', async () => {
    await proxyClientFromInventory(fleet.inventory).disable('ssh-3');
    const r = await scan();
    expect(kinds(r, 'ssh-3')).toEqual(['proxy-state']);
    expect(row(r, 'ssh-3').items[0]!.detail).toMatchObject({ state: 'disabled' });
    expect(row(r, 'ssh-3').proxy).toMatchObject({ name: 'ssh-3', state: 'disabled' });

    // Through the CLI this time: --json report, exit 1; then --repair, exit 0; then --quiet prints nothing.
    const text = renderDriftText(r);
    expect(text).toMatch(/ssh-3: DRIFT \(1 item\)\n  - proxy-state: the proxy has it disabled/);
    expect(text).toContain('ssh-1: ok');
    const found = await cli(['drift', '--json']);
    expect(JSON.parse(found.stdout)).toMatchObject({ proxy: { status: 'ok' } });
    expect(found.status).toBe(1);
    expect((JSON.parse(found.stdout) as DriftReport).instances.find((i) => i.instance === 'ssh-3')!.items.map((i) => i.kind)).toEqual(['proxy-state']);
    const fixed = await cli(['drift', '--repair']);
    expect(fixed.stderr).not.toMatch(/\n\s+at /);
    expect(fixed.stdout).toContain('ssh-3: repaired');
    expect(fixed.stdout).toContain('enabled in the proxy');
    expect(fixed.status).toBe(0);
    const quiet = await cli(['drift', '--quiet']);
    expect(quiet.status).toBe(0);
    expect(quiet.stdout).toBe('');
    expect((await proxyClientFromInventory(fleet.inventory).listInstances()).map((i) => i.state)).toEqual(['enabled', 'enabled', 'enabled']);
  });

  it('an instance missing from the proxy\'s upstream set: named, and repaired by reloading the proxy from the inventory', async () => {
    const all = fleet.inventory.instances.map((i) => ({ name: i.name, url: i.url }));
    await fleet.proxy!.reload(all.filter((u) => u.name !== 'ssh-2'));
    const r = await scan();
    expect(kinds(r, 'ssh-2')).toEqual(['proxy-missing']);
    const repaired = await repairDrift(fleet.inventory, await scanDrift(fleet.inventory), { proxy: await proxyControlFor(fleet.inventory, progress), progress });
    expect(repaired.notRepaired).toEqual([]);
    expect(repaired.after?.instances.flatMap((i) => i.items.map((x) => `${i.instance} ${x.kind}`))).toEqual([]);
    expect(repaired.exitCode).toBe(0);
    expect(fleet.proxy!.instances().map((i) => i.name)).toEqual(['ssh-1', 'ssh-2', 'ssh-3']);
  });

  it('status shows the proxy view per instance; status and drift stay useful when the proxy is unreachable', async () => {
    const admin = proxyClientFromInventory(fleet.inventory);
    await admin.drain('ssh-2');
    try {
      const rows = await fleetStatus(fleet.inventory);
      expect(rows.map((r) => [r.instance, r.proxy?.state, r.proxy?.healthy])).toEqual([
        ['ssh-1', 'enabled', true],
        ['ssh-2', 'draining', true],
        ['ssh-3', 'enabled', true],
      ]);
      for (const r of rows) expect(r.proxy?.inflight).toBe(0);
      const text = await cli(['status']);
      expect(text.status).toBe(0);
      expect(text.stdout).toMatch(/ssh-2 .* draining, 0 in flight/);
      // The same rule as rollback, releases and drift (decideRollbackTarget): A was deployed before B.
      expect(text.stdout).toContain(`rollback target: ${A.release}`);
    } finally {
      await admin.enable('ssh-2');
    }
    // A proxy that does not answer: every row still has disk, process and health; the proxy cell says why.
    const dead = new ProxyAdminClient(`http://127.0.0.1:${await freePort('127.0.0.1')}`, 'token', { timeoutMs: 1000 });
    const rows = await fleetStatus(fleet.inventory, { proxyClient: dead });
    for (const r of rows) {
      expect(r).toMatchObject({ reachable: true, healthy: true, current: { release: B.release, digest: B.digest }, proxy: { state: 'unreachable' } });
      expect(r.proxy?.error).toContain('unreachable');
    }
    // drift with that proxy: the instances are still checked (clean), the proxy is not: exit 3.
    const d = (await scanDrift(fleet.inventory, { proxyClient: dead })).report;
    expect(d.instances.map((i) => i.status)).toEqual(['ok', 'ok', 'ok']);
    expect(d.proxy).toMatchObject({ status: 'unchecked', error: expect.stringContaining('unreachable') });
    expect(d.exitCode).toBe(3);
  });

  it('an unreachable instance: exit 3, named, and the others are still checked and reported', async () => {
    appendFileSync(join(relDir('ssh-3', B), publicFile(B)), 'x');
    await fleet.ssh.stopHost('ssh-2');
    try {
      const r = await cli(['drift']);
      expect(r.status).toBe(3);
      expect(r.stdout).toMatch(/ssh-2: NOT CHECKED: instance ssh-2 is unreachable/);
      expect(r.stdout).toContain('ssh-1: ok');
      expect(r.stdout).toContain(`ssh-3: DRIFT (1 item)`);
      expect(r.stdout).toContain(`changed ${publicFile(B)}`);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await fleet.ssh.startHost('ssh-2');
    }
    await repairAndExpectClean(['ssh-3']);
  });
});
