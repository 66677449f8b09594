// The main job end to end: build once, deploy over real SSH to three real sshd hosts running
// the real app, balanced by the real proxy, then verify parity and session isolation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { verifyFleet } from '../../deployer/checks/verify.ts';
import { currentOnDisk, manifestOnDisk, startE2eFleet, versionOf, type E2eFleet } from './support.ts';

let fleet: E2eFleet;
const lines: string[] = [];
const progress = (i: string, l: string) => void lines.push(`[${i}] ${l}`);

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.11');
});
afterAll(async () => {
  await fleet?.stop();
});

describe('deploy to three SSH hosts through the proxy', () => {
  let first: Awaited<ReturnType<typeof deploy>>;

  it('builds once, uploads, verifies on each host and activates everywhere', async () => {
    first = await deploy(fleet.inventory, { proxy: await proxyControlFor(fleet.inventory, progress), progress });
    expect(first.failure).toBeUndefined();
    expect(first.ok).toBe(true);
    expect(first.instances.map((i) => i.state)).toEqual(['activated', 'activated', 'activated']);
    // One build, one artifact: every host received exactly the artifact's bytes.
    for (const i of first.instances) expect(i.uploadedBytes).toBeGreaterThan(0);
    expect(new Set(first.instances.map((i) => i.uploadedBytes)).size).toBe(1);
    // The rollout drained and enabled each instance through the proxy, one batch at a time.
    expect(lines.filter((l) => l.endsWith('draining in proxy'))).toHaveLength(3);
    expect(lines.filter((l) => l.endsWith('enabled in proxy'))).toHaveLength(3);
  });

  it('every host has the same digest on disk and serves it on /version', async () => {
    for (const h of fleet.ssh.hosts) {
      expect(currentOnDisk(h.deployTo)).toBe(`releases/${first.release}`);
      expect(manifestOnDisk(h.deployTo).digest).toBe(first.digest);
    }
    for (const i of fleet.inventory.instances) {
      const v = await versionOf(i.url);
      expect(v).toMatchObject({ release: first.release, digest: first.digest, instance: i.name });
    }
  });

  it('verify: parity through the proxy and session isolation pass', async () => {
    const v = await verifyFleet(fleet.inventory, { expected: { release: first.release, digest: first.digest }, proxyUrl: fleet.proxy!.url });
    const failed = v.reports.flatMap((r) => r.checks.filter((c) => c.status !== "pass").map((c) => `${c.check} ${c.subject}: expected ${c.expected}, found ${c.found}`));
    expect(failed).toEqual([]);
    expect(v.ok).toBe(true);
    const parity = v.reports.find((r) => r.kind === 'parity')!;
    expect(parity.checks.length).toBeGreaterThanOrEqual(3 * 3 + 2);
    const isolation = v.reports.find((r) => r.kind === 'isolation')!;
    if (isolation.kind !== 'isolation') throw new Error('unreachable');
    const ids = isolation.sessions.map((s) => s.sessionId);
    expect(new Set(ids).size).toBe(5);
    expect(isolation.forgeries.length).toBeGreaterThanOrEqual(4);
    for (const f of isolation.forgeries) expect(f.sessionId).not.toBe(f.forgedId);
  });

  it('a re-deploy of the same release uploads nothing and restarts nothing', async () => {
    const again = await deploy(fleet.inventory, { release: first.release, proxy: await proxyControlFor(fleet.inventory, progress), progress });
    expect(again.ok).toBe(true);
    expect(again.instances.map((i) => i.uploadedBytes)).toEqual([0, 0, 0]);
    expect(again.instances.map((i) => i.state)).toEqual(['unchanged', 'unchanged', 'unchanged']);
  });
});
