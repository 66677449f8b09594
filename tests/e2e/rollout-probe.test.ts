// Issue 12, item 10: a rollout that proves itself. While `lockstep deploy` / `rollback` run, the
// probe sends cookie-less page loads (every asset of the page) and one cookie-holding session
// through the real proxy; the summary, --json and the history carry what users saw, and a failed
// request makes the exit code 1. Three real sshd hosts, the real app, the real proxy in this process.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploy } from '../../deployer/rollout/deploy.ts';
import { proxyControlFor } from '../../deployer/balancer/control.ts';
import { upstreamsFromInventory } from '../../proxy/inventory-config.ts';
import type { ProbeFigures } from '../../deployer/checks/rollout-probe.ts';
import { makeReleases, startE2eFleet, type E2eFleet, runCliAsync, type CliRun } from './support.ts';

let fleet: E2eFleet;
let good1 = '';
let good2 = '';
const progress = () => {};

/** The CLI in a child process, asynchronously (the proxy runs in this process). */
function cli(args: string[]): Promise<CliRun> {
  return runCliAsync(fleet.inventory.file, args);
}

beforeAll(async () => {
  fleet = await startE2eFleet(3, '127.0.0.171');
  [good1, good2] = (await makeReleases(fleet.inventory, ['good', 'good'])) as [string, string];
  const r = await deploy(fleet.inventory, { release: good1, proxy: await proxyControlFor(fleet.inventory, progress), progress });
  if (!r.ok) throw new Error(`first deploy failed: ${r.failure}`);
});
afterAll(async () => {
  await fleet?.stop();
});

describe('the rollout probe', () => {
  it('a rolling deploy through the real proxy: requests > 0, 0 failed, 0 asset 404s, session intact; --json and the history carry the figures', async () => {
    const r = await cli(['deploy', '--release', good2, '--no-verify', '--json']);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const report = JSON.parse(r.stdout) as { ok: boolean; probe: ProbeFigures };
    expect(report.ok).toBe(true);
    const p = report.probe;
    expect(p.failures).toEqual([]);
    expect(p.requests).toBeGreaterThan(0);
    expect(p.pageLoads).toBeGreaterThan(0);
    expect(p.assetRequests).toBeGreaterThan(0); // the real app's page names its hashed JS/CSS
    expect(p.sessionReads).toBeGreaterThan(0);
    expect(p).toMatchObject({ failed: 0, asset404s: 0, sessionsIntact: true, capped: false });
    expect(p.requests).toBeLessThanOrEqual(fleet.inventory.deploy.probe.max_requests);
    expect(r.status).toBe(0);

    const history = JSON.parse((await cli(['history', '--json'])).stdout) as { event: string; release: string; message?: string; probe?: ProbeFigures }[];
    const entries = history.filter((h) => h.event === 'probe');
    expect(entries.map((h) => h.release)).toEqual([good2, good2, good2]); // one per instance
    expect(entries[0]!.probe).toMatchObject({ requests: p.requests, failed: 0 });
    expect(entries[0]!.message).toMatch(/^during the deploy: [\d,]+ requests, 0 failed, 0 asset 404s, p99 \d+ ms, sessions intact$/);
    // A probe entry changes no release's state: the rollback target is still good1.
    expect((await cli(['releases'])).stdout).toMatch(new RegExp(`${good1} .*target`));
  });

  it('a rollback prints what users saw during it', async () => {
    const r = await cli(['rollback']);
    expect(r.stdout).toMatch(/during the rollback: [\d,]+ requests, 0 failed, 0 asset 404s, p99 [\d,]+ ms, sessions intact/);
    expect(r.stdout).toContain(good1);
    expect(r.status).toBe(0);
  });

  it('a deploy while the proxy misroutes one instance: the rollout itself succeeds, the probe names the failures and the exit code is 1', async () => {
    // Something that is not the app answers for ssh-3 in the proxy: healthy on the health path, 404 everywhere else.
    const impostor = http.createServer((req, res) => {
      res.statusCode = req.url === fleet.inventory.app.health_path ? 200 : 404;
      res.end(res.statusCode === 200 ? 'ok' : 'not here');
    });
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.179', resolve));
    const upstreams = upstreamsFromInventory(fleet.inventory);
    await fleet.proxy!.reload(upstreams.map((u) => (u.name === 'ssh-3' ? { ...u, url: `http://127.0.0.179:${(impostor.address() as AddressInfo).port}` } : u)));
    try {
      const r = await cli(['deploy', '--release', good2, '--no-verify', '--json']);
      const report = JSON.parse(r.stdout) as { ok: boolean; probe: ProbeFigures };
      expect(report.ok).toBe(true); // every instance was activated and passed its gates
      expect(report.probe.failed).toBeGreaterThan(0);
      expect(report.probe.failures.map((f) => f.error)).toContain('HTTP 404');
      expect(r.status).toBe(1);

      const text = await cli(['rollback']);
      expect(text.stdout).toMatch(/during the rollback: [\d,]+ requests, [1-9][\d,]* failed, /);
      expect(text.stdout).toMatch(/ {2}- (page|asset|session|upload) \S+: HTTP 404/);
      expect(text.status).toBe(1);
    } finally {
      await fleet.proxy!.reload(upstreams);
      await new Promise((resolve) => impostor.close(resolve));
    }
  });
});
