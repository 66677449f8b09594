/**
 * Benchmark: one-command rollback of a three-instance fleet versus a fresh deploy of the same
 * release, in one run, on real sshd hosts running the real app behind the real proxy.
 *
 *   npx tsx bench/rollback.ts [--runs 3] [--base 127.0.3.11]
 *
 * Fresh deploy: the release is wiped from every host (release dir and artifact), then
 * `deploy()` builds the app and uploads, verifies, unpacks and rolls it out.
 * Rollback: the fleet is first moved to another release, then `rollback()` is timed.
 * Prints the median wall times, their ratio, and the bytes each one uploaded (a rollback must
 * upload nothing and build nothing). Loopback only; bounded by --runs; everything is stopped at
 * the end.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { deploy } from '../deployer/rollout/deploy.ts';
import { proxyControlFor } from '../deployer/balancer/control.ts';
import { rollback } from '../deployer/rollout/rollback.ts';
import { makeReleases, startE2eFleet } from '../tests/e2e/support.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, base: { type: 'string', default: '127.0.3.11' } } });
const runs = Math.max(1, Math.min(20, Number(values.runs)));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const fleet = await startE2eFleet(3, values.base!);
try {
  const control = () => proxyControlFor(fleet.inventory, () => {});
  const [other] = await makeReleases(fleet.inventory, ['good']);
  const freshMs: number[] = [];
  const rollbackMs: number[] = [];
  let freshBytes = 0;
  let rollbackBytes = 0;
  let target = '';
  for (let i = 0; i < runs; i++) {
    // Fresh deploy: nothing of the release is on the hosts; build + upload + rollout.
    if (target) {
      for (const h of fleet.ssh.hosts) {
        rmSync(join(h.deployTo, 'releases', target), { recursive: true, force: true });
        rmSync(join(h.deployTo, 'artifacts'), { recursive: true, force: true });
      }
    }
    let t = performance.now();
    const fresh = await deploy(fleet.inventory, { proxy: await control() });
    freshMs.push(performance.now() - t);
    if (!fresh.ok) throw new Error(`fresh deploy failed: ${fresh.failure}`);
    target = fresh.release;
    freshBytes = fresh.instances.reduce((n, r) => n + r.uploadedBytes, 0);

    const away = await deploy(fleet.inventory, { release: other!, proxy: await control() });
    if (!away.ok) throw new Error(`deploy of the other release failed: ${away.failure}`);

    t = performance.now();
    const back = await rollback(fleet.inventory, { to: target, proxy: await control() });
    rollbackMs.push(performance.now() - t);
    if (!back.ok || back.release !== target) throw new Error(`rollback failed: ${back.failure}`);
    rollbackBytes = back.instances.reduce((n, r) => n + r.uploadedBytes, 0);
  }
  const f = median(freshMs);
  const r = median(rollbackMs);
  console.log(`runs: ${runs}, 3 instances (real sshd hosts), real app behind the real proxy`);
  console.log(`fresh deploy (build + upload + verify + rollout): median ${f.toFixed(0)} ms  [${freshMs.map((x) => x.toFixed(0)).join(', ')}], uploaded ${freshBytes} bytes`);
  console.log(`rollback (rollout only):                           median ${r.toFixed(0)} ms  [${rollbackMs.map((x) => x.toFixed(0)).join(', ')}], uploaded ${rollbackBytes} bytes`);
  console.log(`rollback / fresh deploy: ${(r / f).toFixed(2)}`);
} finally {
  await fleet.stop();
}
