// Issue 11 on a real fleet (three sshd hosts on 127.0.13.21-23, the real app, the real proxy in
// this process): a deploy with --json-events prints one JSON object per stderr line (progress with
// phases, and the per-instance phase summary) and announces itself to the proxy while it runs
// (GET /admin/rollout), clearing it at the end; `status` reports each source for what it is, so
// with one host's sshd stopped the app still shows its release, healthy, enabled in the proxy,
// and the verdict stays PARITY with the ssh failure named (exit 3), as text and as --json.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyClientFromInventory } from '../../deployer/balancer/admin-client.ts';
import type { FleetVerdict, RolloutInProgress } from '../../verdict/fleet-verdict.ts';
import type { InstanceStatus } from '../../deployer/fleet/status.ts';
import { makeReleases, startE2eFleet, type E2eFleet, runCliAsync, type CliRun } from './support.ts';

let fleet: E2eFleet;
let r1 = '';

/** The CLI in a child process, asynchronously (the proxy runs in this process), killed after `timeoutMs`. */
function cli(args: string[], timeoutMs = 120_000): Promise<CliRun> {
  return runCliAsync(fleet.inventory.file, args, timeoutMs);
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.13.21', { deploy: { activation_timeout_ms: 15000 } });
  [r1] = (await makeReleases(fleet.inventory, ['good'])) as [string];
});
afterAll(async () => {
  await fleet?.stop();
});

describe('progress and status on a real fleet', () => {
  it('deploy --json-events: JSON lines with phases and a summary; the rollout is announced to the proxy while it runs and cleared after', async () => {
    const admin = proxyClientFromInventory(fleet.inventory, process.env, { timeoutMs: 2000 });
    const seen: RolloutInProgress[] = [];
    let running = true;
    const watcher = (async () => {
      for (let i = 0; i < 3000 && running; i++) {
        const r = await admin.rollout().catch(() => null);
        if (r) seen.push(r);
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
    const d = await cli(['deploy', '--release', r1, '--no-verify', '--json-events', '-m', 'issue 11 e2e']);
    running = false;
    await watcher;
    expect(d.status, d.stderr).toBe(0);

    // The launcher's own notice when it compiled build/ first comes before the CLI runs.
    const lines = d.stderr.trim().split('\n').filter((l) => !/^lockstep: compiled build\/ first/.test(l));
    const events = lines.map((l) => JSON.parse(l) as { time: string; type: string; instance?: string; message?: string; phase?: string; phases_ms?: Record<string, Record<string, number>> });
    for (const e of events) expect(Date.parse(e.time)).not.toBeNaN();
    const phasesOf = (instance: string) => new Set(events.filter((e) => e.type === 'progress' && e.instance === instance && e.phase).map((e) => e.phase));
    for (const n of ['ssh-1', 'ssh-2', 'ssh-3']) {
      for (const p of ['upload', 'verify', 'unpack', 'drain', 'switch', 'restart', 'gates', 'enable']) expect(phasesOf(n), `${n} ${p}`).toContain(p);
    }
    const summary = events.filter((e) => e.type === 'summary');
    expect(summary).toHaveLength(1);
    expect(Object.keys(summary[0]!.phases_ms!)).toEqual(expect.arrayContaining(['ssh-1', 'ssh-2', 'ssh-3']));
    expect(Object.keys(summary[0]!.phases_ms!['ssh-2']!)).toEqual(expect.arrayContaining(['upload', 'unpack', 'drain', 'restart', 'gates']));

    // The dashboard's source: announced with the release, the holder (user@host) and k of 3; gone after.
    expect(seen.length).toBeGreaterThan(0);
    for (const r of seen) expect(r).toMatchObject({ release: r1, total: 3, operation: 'deploy', holder: expect.stringMatching(/^\S+@\S+ pid \d+/) });
    expect(seen.some((r) => r.phase)).toBe(true);
    expect(await admin.rollout()).toBeNull();
  });

  it('status: PARITY; with ssh-2\'s sshd stopped, its app still shows its release, healthy and enabled in the proxy, and ssh is named unreachable (exit 3)', async () => {
    const ok = await cli(['status']);
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toContain(`PARITY: all 3 instances serve ${r1} (exit 0)`);

    await fleet.ssh.stopHost('ssh-2');
    try {
      const text = await cli(['status']);
      expect(text.status).toBe(3);
      const row = text.stdout.split('\n').find((l) => l.startsWith('ssh-2 '))!;
      expect(row).toMatch(/UNREACHABLE/);
      expect(row).toContain(r1); // the app column: what /version answered
      expect(row).not.toMatch(/not (running|answering)|DOWN/);
      expect(row).toMatch(/enabled, 0 in flight/);
      expect(text.stdout).toContain(`PARITY: all 3 instances serve ${r1} (exit 3)`);
      expect(text.stdout).toMatch(/note: ssh-2: ssh unreachable/);

      const json = await cli(['status', '--json']);
      expect(json.status).toBe(3);
      const body = JSON.parse(json.stdout) as { verdict: FleetVerdict; instances: InstanceStatus[] };
      expect(body.verdict).toMatchObject({ state: 'parity', exitCode: 3 });
      const ssh2 = body.instances.find((i) => i.instance === 'ssh-2')!;
      expect(ssh2).toMatchObject({ reachable: false, ssh: { reachable: false }, healthy: true, running: { release: r1 }, proxy: { state: 'enabled', healthy: true } });
      expect(ssh2.ssh.error).toBeTruthy();
    } finally {
      await fleet.ssh.startHost('ssh-2');
    }
  });
});
