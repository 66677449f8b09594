// Two worst-day gaps of issue 13 on one small fleet of real sshd hosts (127.0.18.1-2) with the
// real app and the real proxy (127.0.18.100):
// - a release that crash-loops after activation (it answers its health check once and exits 1 s
//   later): the stability window after the gates (deploy.stability_window_ms, at its default
//   here) catches it, the deploy rolls back by itself, exits non-zero, the fleet ends on the
//   previous release and no lock is left;
// - secrets never in logs: the admin token (env LOCKSTEP_ADMIN_TOKEN) and an app.env secret are
//   in no CLI output (plain and --json-events), no history entry on any host and no proxy log line.
//   The inventory has no SSH key passphrase setting (ssh.identity_file only), so none is tested.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { parse, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminTokenFromInventory } from '../../config/proxy-section.ts';
import { currentOnDisk, makeReleases, repoRoot, startE2eFleet, versionOf, type E2eFleet } from './support.ts';

/** A secret the app gets through app.env: it must never appear in any output or log. */
const APP_SECRET = 'app-env-secret-5f1c2d9e7a';
/** Any CLI run here is killed after this (a hang fails the case instead of the whole file). */
const RUN_BOUND_MS = 90_000;

let fleet: E2eFleet;
let releases: string[];
/** The fleet's inventory with the stability window at its default and app.env holding APP_SECRET. */
let inventory: string;
/** Every line the proxy logged (pino JSON, debug level). */
const proxyLog: string[] = [];
/** Outputs of the CLI runs (all with the known secrets), searched by the last case. */
const runs: Run[] = [];

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI with the fleet's admin token in LOCKSTEP_ADMIN_TOKEN (SIGKILLed after RUN_BOUND_MS). */
function cli(args: string[]): Promise<Run> {
  const env = { ...process.env, LOCKSTEP_ADMIN_TOKEN: adminTokenFromInventory(fleet.inventory, {}).value };
  const child = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', inventory], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), RUN_BOUND_MS);
  return new Promise<Run>((resolve) =>
    child.on('exit', (status) => {
      clearTimeout(killer);
      const r = { status, stdout, stderr };
      runs.push(r);
      resolve(r);
    }),
  );
}

const names = ['ssh-1', 'ssh-2'];
const deployTo = (name: string) => fleet.ssh.host(name).deployTo;
const lockHeld = (name: string) => existsSync(join(deployTo(name), '.lockstep', 'lock'));

beforeAll(async () => {
  fleet = await startE2eFleet(2, '127.0.18.1', {
    proxyAddress: '127.0.18.100',
    deploy: { probe: { enabled: false }, batch_size: '100%' },
    proxyLogger: pino({ level: 'debug' }, { write: (line: string) => void proxyLog.push(line) }),
  });
  releases = await makeReleases(fleet.inventory, ['good', 'crashes']);
  const raw = parse(readFileSync(fleet.inventory.file, 'utf8')) as { deploy: Record<string, unknown>; app: Record<string, unknown> };
  delete raw.deploy.stability_window_ms; // the default
  raw.app.env = { SESSION_SECRET: APP_SECRET };
  inventory = join(fleet.ssh.dir, 'inventory-secret.yaml');
  writeFileSync(inventory, stringify(raw));
  const first = await cli(['deploy', '--no-verify', '--json-events', '--release', releases[0]!]);
  if (first.status !== 0) throw new Error(`first deploy failed:\n${first.stdout}\n${first.stderr}`);
}, 180_000);

afterAll(async () => {
  await fleet?.stop();
});

describe('crash loop after activation; secrets never in logs', () => {
  it('a release that crash-loops after activation (answers health once, exits 1 s later): caught by the stability window, rolled back, non-zero exit, fleet on the previous release, locks released', async () => {
    const r = await cli(['deploy', '--no-verify', '--release', releases[1]!]);
    const out = r.stdout + r.stderr;
    expect(r.status, out).not.toBe(0);
    expect(r.status).not.toBeNull(); // it ended by itself, not by the SIGKILL bound
    expect(out).toMatch(/stability window: health check .* failed \d+ ms after the gates passed/);
    for (const n of names) {
      expect(currentOnDisk(deployTo(n))).toBe(`releases/${releases[0]}`);
      expect(lockHeld(n)).toBe(false);
    }
    // Every instance serves the previous release again, directly and through the real proxy.
    for (const i of fleet.inventory.instances) expect((await versionOf(i.url)).release).toBe(releases[0]);
    for (let n = 0; n < 4; n++) expect((await versionOf(fleet.proxyUrl!)).release).toBe(releases[0]);
  });

  it('secrets never in logs: the admin token and an app.env secret are in no CLI output (plain, --json-events), history entry or proxy log line', async () => {
    const token = adminTokenFromInventory(fleet.inventory, {}).value;
    await cli(['status']);
    // The secret did reach the app (its environment), so its absence below means something.
    const { pid } = (await versionOf(fleet.inventory.instances[0]!.url)) as unknown as { pid: number };
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).toContain(`SESSION_SECRET=${APP_SECRET}`);
    expect(runs.some((r) => r.stderr.startsWith('{'))).toBe(true); // a --json-events run is among them
    const texts: [string, string][] = runs.flatMap((x, n): [string, string][] => [[`run ${n} stdout`, x.stdout], [`run ${n} stderr`, x.stderr]]);
    for (const n of names) {
      const dir = join(deployTo(n), '.lockstep');
      const files = readdirSync(dir).filter((f) => f.startsWith('history'));
      expect(files.length).toBeGreaterThan(0);
      for (const f of files) texts.push([`${n} ${f}`, readFileSync(join(dir, f), 'utf8')]);
    }
    expect(proxyLog.length).toBeGreaterThan(0);
    texts.push(['proxy log', proxyLog.join('')]);
    const accessLog = join(fleet.inventory.dir, '.lockstep', 'proxy-access.log');
    if (existsSync(accessLog)) texts.push(['proxy access log', readFileSync(accessLog, 'utf8')]);
    for (const [where, text] of texts) {
      expect(text.includes(token), `admin token in ${where}`).toBe(false);
      expect(text.includes(APP_SECRET), `app.env secret in ${where}`).toBe(false);
    }
  });
});
