/**
 * `lockstep drift --repair`: put drifted instances back on the expected release through the
 * normal machinery (upload when the host lacks the artifact, unpack + verify every file on the
 * host, activate through the rollout with drain/enable), then verify the fleet and scan again.
 * Instances without drift are never touched (not even locked).
 */
import { lockFleet, newLockHolder, unlockFleet } from '../fleet/lock.ts';
import { scanDrift } from './scan.ts';
import type { DriftItem, DriftKind, DriftOptions, DriftReport, DriftScan, InstanceDrift } from './types.ts';
import { repairAssetStore } from './assets.ts';
import { LockHeldError, LockstepError } from '../../config/errors.ts';
import { openFleet, reasonOf, type Fleet } from '../fleet/fleet.ts';
import { proxyClientFromInventory } from '../balancer/admin-client.ts';
import type { InstanceOps } from '../fleet/instance.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { Manifest } from '../build/manifest.ts';
import type { ProxyControl } from '../rollout/rollout.ts';
import { runFleetRollout } from '../rollout/run.ts';
import { verifyFleet, type VerifyResult } from '../checks/verify.ts';

/** Kinds fixed by (re)installing and activating the expected release. */
const RELEASE_KINDS: DriftKind[] = ['no-current', 'incomplete-current', 'different-release', 'files', 'process-down', 'process-digest', 'process-unhealthy'];
/** Kinds only the proxy's operator can fix (the proxy reads its upstreams from the inventory on start/SIGHUP). */
const PROXY_CONFIG_KINDS: DriftKind[] = ['proxy-missing', 'proxy-url', 'proxy-extra'];

export interface RepairInstanceOutcome {
  instance: string;
  state: 'repaired' | 'failed';
  /** What was done, in order, in words. */
  actions: string[];
  error?: string;
}

export interface RepairReport {
  /** True when every repair worked, the verification passed and the scan after it is clean. */
  ok: boolean;
  before: DriftReport;
  instances: RepairInstanceOutcome[];
  /** Drift the deployer cannot repair, with what to do about it. */
  notRepaired: string[];
  verification: VerifyResult | null;
  after: DriftReport | null;
  /** 0 repaired and clean, 1 drift remains or the verification failed, 3 a repair failed or something could not be checked. */
  exitCode: 0 | 1 | 3;
}

export interface RepairOptions {
  /** The options the scan used (the rescan after the repair uses them too). */
  scanOptions?: DriftOptions;
  /** Drain/enable through the proxy; undefined when there is none running. */
  proxy?: ProxyControl;
  progress?: (instance: string, line: string, phase?: string) => void;
  /** Run the post-deploy checks after the repair (default true). */
  verify?: boolean;
  /** Aborted (Ctrl-C): the rollout stops after the batch in progress; the lock is still released. */
  signal?: AbortSignal;
  /** The operator's note (`-m`), recorded with the lock and in the history. */
  message?: string;
}

function has(row: InstanceDrift, kinds: DriftKind[]): boolean {
  return row.items.some((i) => kinds.includes(i.kind));
}

/** Make sure the host has the artifact of `manifest`: upload the local copy, or check the host's own. */
async function ensureArtifact(o: InstanceOps, manifest: Manifest, local: string | null, actions: string[]): Promise<void> {
  if (local) {
    const up = await o.uploadArtifact(local, manifest);
    actions.push(up.uploaded ? `uploaded the artifact of ${manifest.release} (${up.bytes} B, sha256 verified on the host)` : `artifact of ${manifest.release} already on the host (sha256 verified)`);
    return;
  }
  if (!(await o.hasArtifact(manifest))) {
    throw new LockstepError(
      'LOCKSTEP_NO_ARTIFACT',
      `${o.name}: artifacts/${manifest.digest}.tar.gz is missing or damaged on the host and dist/artifacts has no copy of ${manifest.release}: build it here (lockstep build) or deploy it again`,
      3,
    );
  }
  actions.push(`artifact of ${manifest.release} found on the host (sha256 verified)`);
}

/** Unpack (or re-verify) a release on the host and link the shared dirs. @returns whether the release dir was reused as it was. */
async function installRelease(o: InstanceOps, manifest: Manifest, local: string | null, actions: string[]): Promise<boolean> {
  await o.prepare();
  await ensureArtifact(o, manifest, local, actions);
  const { reused } = await o.unpackRelease(manifest);
  await o.linkShared(manifest.release);
  actions.push(
    reused
      ? `releases/${manifest.release}: every file verified on the host, kept`
      : `releases/${manifest.release}: unpacked afresh, ${manifest.files.length} files verified on the host (a damaged dir is kept aside as .rejected-*)`,
  );
  return reused;
}

/**
 * Repair the drift a scan found. Takes the deploy lock on the instances `firstScan` found drifted
 * (only those), scans the fleet again under that lock and repairs what the fresh scan shows:
 * installs the expected release where needed, activates through `rollout` (drain, switch,
 * restart, gates, enable), enables instances the proxy had out of rotation; then releases the
 * lock, runs `verifyFleet` and scans again. An instance that drifted only after the first scan
 * was not locked and is reported, not repaired.
 * @returns per-instance outcomes, what could not be repaired, the verification and the new scan
 *   (`before` is the scan taken under the lock).
 * Never throws for an instance failure; @throws ConfigError from the rescan's configuration only.
 */
export async function repairDrift(inventory: Inventory, firstScan: DriftScan, options: RepairOptions = {}): Promise<RepairReport> {
  const progress = options.progress ?? (() => {});
  const notRepaired: string[] = [];
  const drifted = (r: DriftReport) => r.instances.filter((i) => i.status === 'drift' && i.items.some((x) => !PROXY_CONFIG_KINDS.includes(x.kind))).map((i) => i.instance);

  // Take the lock, then read: lock the instances the first scan found drifted, scan again under
  // that lock, and repair only what the fresh scan shows (a deploy may have finished meanwhile).
  const lockNames = drifted(firstScan.report);
  const fleet = lockNames.length > 0 ? openFleet(inventory, { factory: options.scanOptions?.factory, instanceNames: lockNames, audit: { operation: 'repair', message: options.message } }) : null;
  const holder = newLockHolder(firstScan.report.expected.release, options.message ?? 'drift repair');
  let locked = false;
  let lockFailure: string | undefined;
  let scan = firstScan;
  if (fleet) {
    try {
      await lockFleet(fleet, holder);
      locked = true;
      progress('drift', `locked ${lockNames.join(', ')}; scanning again under the lock`);
      scan = await scanDrift(inventory, { ...options.scanOptions, ownLockId: String(holder.id) });
      holder.release = scan.report.expected.release;
    } catch (e) {
      lockFailure = e instanceof LockHeldError ? e.message : `${locked ? 'the scan under the lock failed' : 'taking the lock failed'}: ${(e as Error).message}`;
      if (locked) await unlockFleet(fleet, String(holder.token), progress);
      locked = false;
    }
  }
  // Released before the verification and the scan after the repair, which must not see it.
  let released = false;
  const releaseLock = async (): Promise<void> => {
    if (released || !fleet) return;
    released = true;
    if (locked) await unlockFleet(fleet, String(holder.token), progress);
    await fleet.close();
  };
  try {
    return await repairScanned(inventory, scan, fleet, locked ? holder : null, lockNames, lockFailure, notRepaired, options, releaseLock);
  } finally {
    await releaseLock();
  }
}

/** The repair proper, on the scan taken under the lock (`holder` holds the lock on `fleet`). */
async function repairScanned(
  inventory: Inventory,
  scan: DriftScan,
  fleet: Fleet | null,
  holder: Record<string, unknown> | null,
  lockNames: string[],
  lockFailure: string | undefined,
  notRepaired: string[],
  options: RepairOptions,
  releaseLock: () => Promise<void>,
): Promise<RepairReport> {
  const progress = options.progress ?? (() => {});
  const before = scan.report;
  const { expected } = before;
  for (const i of before.instances.filter((x) => x.status === 'unchecked')) notRepaired.push(`${i.instance}: not checked, so not repaired (${i.error})`);
  if (before.proxy.status === 'unchecked') notRepaired.push(`proxy: not checked (${before.proxy.error})`);
  const proxyConfigItems: { where: string; item: DriftItem }[] = [
    ...before.fleet.map((item) => ({ where: 'proxy', item })),
    ...before.instances.flatMap((i) => i.items.filter((x) => PROXY_CONFIG_KINDS.includes(x.kind)).map((item) => ({ where: i.instance, item }))),
  ];
  // The proxy's upstream set comes from the inventory file it loaded: ask it to load it again.
  let proxyReloaded = false;
  if (proxyConfigItems.length > 0) {
    try {
      const { added, removed } = await proxyClientFromInventory(inventory).reload();
      proxyReloaded = true;
      progress('proxy', `reloaded its upstreams from the inventory (added: ${added.join(', ') || 'none'}; removed: ${removed.join(', ') || 'none'})`);
    } catch (e) {
      for (const { where, item } of proxyConfigItems) {
        notRepaired.push(`${where}: ${item.kind}: reloading the proxy failed (${(e as Error).message}): send SIGHUP to \`lockstep proxy\``);
      }
    }
  }

  // A stale lock blocks the repair's own lock: breaking it is the operator's explicit step.
  for (const i of before.instances) for (const item of i.items.filter((x) => x.kind === 'stale-lock')) notRepaired.push(`${i.instance}: ${item.kind}: ${item.message}`);
  // The instance's environment is the host's and the inventory's, not the release's: a repair does not change it.
  for (const i of before.instances) {
    for (const item of i.items.filter((x) => x.kind === 'config-fingerprint' || x.kind === 'session-store')) {
      notRepaired.push(`${i.instance}: ${item.kind}: ${item.message}; align the instance's environment with the inventory (app.env, app.session_store, app.redis_url), then restart it (lockstep deploy)`);
    }
  }
  const fresh = before.instances.filter((i) => i.status === 'drift' && i.items.some((x) => !PROXY_CONFIG_KINDS.includes(x.kind)));
  for (const i of fresh.filter((x) => !lockNames.includes(x.instance))) {
    notRepaired.push(`${i.instance}: drifted after the first scan, so it was not locked: run \`lockstep drift --repair\` again`);
  }
  const targets = fresh.filter((i) => lockNames.includes(i.instance));
  const outcomes = new Map<string, RepairInstanceOutcome>(targets.map((t) => [t.instance, { instance: t.instance, state: 'repaired', actions: [] }]));
  const fail = (name: string, message: string) => {
    const out = outcomes.get(name)!;
    out.state = 'failed';
    out.error = out.error ? `${out.error}; ${message}` : message;
  };
  if (lockFailure) {
    for (const name of lockNames) {
      outcomes.set(name, { instance: name, state: 'repaired', actions: [] });
      fail(name, `not repaired: ${lockFailure}; nothing was changed`);
    }
  }

  if (targets.length > 0 && fleet && holder) {
    const rowOf = (o: InstanceOps) => targets.find((t) => t.instance === o.name)!;
    const ops = fleet.ops.filter((o) => targets.some((t) => t.instance === o.name));
    // Phase 1: the expected release (and the rollback target) complete and verified on each host.
    const prepared = await fleet.each(async (o) => {
      const row = rowOf(o);
      const out = outcomes.get(o.name)!;
      if (has(row, RELEASE_KINDS)) {
        if (!scan.manifest) {
          throw new LockstepError(
            'LOCKSTEP_NO_MANIFEST',
            `no trusted manifest of ${expected.release}: not in dist/artifacts, and no instance has a releases/${expected.release}/manifest.json whose files hash to digest ${expected.digest.slice(0, 12)}`,
            3,
          );
        }
        progress(o.name, `installing ${expected.release} (${row.items.map((i) => i.kind).join(', ')})`);
        await installRelease(o, scan.manifest, scan.localArtifact, out.actions);
      }
      if (has(row, ['rollback-target'])) {
        const m = scan.rollbackManifest;
        if (!m) throw new LockstepError('LOCKSTEP_NO_MANIFEST', `no trusted manifest of the rollback target ${before.rollbackTarget}: it cannot be restored here`, 3);
        progress(o.name, `restoring rollback target ${m.release}`);
        await installRelease(o, m, scan.rollbackArtifact, out.actions);
      }
      if (has(row, ['asset-store'])) {
        progress(o.name, 'restoring the asset store');
        out.actions.push(...(await repairAssetStore(o, row.items.filter((i) => i.kind === 'asset-store'), [scan.manifest, scan.rollbackManifest])));
      }
    }, ops);
    prepared.forEach((r, i) => {
      if (r.status === 'rejected') fail(ops[i]!.name, reasonOf(r));
    });

    // Phase 2: activation through the rollout (drain, switch, restart, gates, enable).
    const manifest = scan.manifest;
    const activateWith = async (ops: InstanceOps[]): Promise<void> => {
      if (ops.length === 0 || !manifest) return;
      const result = await runFleetRollout({
        fleet,
        ops,
        holder,
        manifest,
        // "before" only when it ran another complete release: that is where a failed activation
        // goes back to. Repaired in place (current was the expected or an incomplete release)
        // there is nothing to go back to, and null makes the rollout restart it even when
        // /version looks right: the code it runs may come from the damaged dir.
        previous: new Map(ops.map((o) => [o.name, rowOf(o).current.release !== expected.release ? rowOf(o).current.release : null])),
        proxy: options.proxy,
        progress,
        signal: options.signal,
        event: 'activate',
      });
      for (const oc of result.outcomes) {
        const out = outcomes.get(oc.instance)!;
        if (oc.state === 'activated') out.actions.push(`activated ${expected.release} (restart, health and version gates${options.proxy ? ', drained and enabled in the proxy' : ''})`);
        else if (oc.state === 'unchanged') out.actions.push(`already serving ${expected.release}; not restarted`);
        else if (oc.state === 'untouched') fail(oc.instance, `not activated: the rollout stopped earlier (${result.failure ?? 'see the other instances'})`);
        else fail(oc.instance, `activation ${oc.state}: ${oc.error ?? result.failure ?? 'unknown'} (now on ${oc.now ?? 'nothing'})`);
      }
    };
    const pending = (o: InstanceOps) => outcomes.get(o.name)!.state !== 'failed' && has(rowOf(o), RELEASE_KINDS);
    // A process serving another digest may not be ours. One instance at a time (so the fleet
    // never loses more than one): drain, stop through the app's own command, and see whether
    // the port is free; if so, activate it right away. Lockstep does not kill processes the
    // service command did not start.
    for (const o of ops.filter((x) => pending(x) && has(rowOf(x), ['process-digest']))) {
      if (options.signal?.aborted) {
        fail(o.name, 'interrupted (signal) before this instance was repaired');
        continue;
      }
      try {
        progress(o.name, `draining and stopping the process that serves another digest (pid ${rowOf(o).running?.pid ?? '?'})`);
        if (options.proxy) await options.proxy.drain(o.name, inventory.deploy.drain_timeout_ms);
        await o.stopApp();
        const still = await o.readVersion();
        if (still) {
          fail(
            o.name,
            `a process (pid ${still.pid ?? '?'}, release ${still.release ?? '?'}) still answers on ${o.instance.url} after the app's stop command: ` +
              'the service command did not start it and cannot stop it (app contract: `stop` only stops what `start` started). ' +
              `Lockstep does not kill processes it did not start: stop pid ${still.pid ?? '?'} on ${o.name} by hand, then run \`lockstep drift --repair\` again`,
          );
          // It was serving before: put it back as it was rather than leave it drained.
          if (options.proxy) await options.proxy.enable(o.name, inventory.deploy.activation_timeout_ms).catch(() => {});
          continue;
        }
        outcomes.get(o.name)!.actions.push('stopped the process serving the wrong digest (app stop command)');
      } catch (e) {
        fail(o.name, (e as Error).message);
        continue;
      }
      await activateWith([o]);
    }
    // Everything else in the rollout's batches.
    await activateWith(ops.filter((o) => pending(o) && !has(rowOf(o), ['process-digest'])));

    // Instances the proxy had out of rotation go back in once they are right.
    for (const o of ops.filter((x) => outcomes.get(x.name)!.state !== 'failed' && has(rowOf(x), ['proxy-state']))) {
      if (!options.proxy) {
        fail(o.name, 'the proxy has it out of rotation, and the proxy admin API is not reachable to enable it');
        continue;
      }
      try {
        await options.proxy.enable(o.name, inventory.deploy.activation_timeout_ms);
        outcomes.get(o.name)!.actions.push('enabled in the proxy (healthy there)');
      } catch (e) {
        fail(o.name, (e as Error).message);
      }
    }
  }
  await releaseLock();

  const instances = [...outcomes.values()];
  for (const i of instances) progress(i.instance, i.state === 'repaired' ? `repaired: ${i.actions.join('; ')}` : `NOT repaired: ${i.error}`);
  let verification: VerifyResult | null = null;
  let verifyError: string | undefined;
  if (options.verify !== false && targets.length > 0) {
    verification = await verifyFleet(inventory, { expected: { release: expected.release, digest: expected.digest }, factory: options.scanOptions?.factory }).catch((e: Error) => {
      verifyError = e.message;
      return null;
    });
  }
  if (verifyError) notRepaired.push(`verification could not run: ${verifyError}`);
  const after = targets.length === 0 && !proxyReloaded ? before : (await scanDrift(inventory, options.scanOptions)).report;
  const failed = instances.some((i) => i.state === 'failed') || verifyError !== undefined;
  const exitCode: RepairReport['exitCode'] = failed || after.exitCode === 3 ? 3 : after.exitCode === 1 || (verification && !verification.ok) ? 1 : 0;
  return { ok: exitCode === 0, before, instances, notRepaired, verification, after, exitCode };
}

/** Human text of a repair: what was done per instance, what could not be repaired, the checks, and the scan after. */
export function renderRepairText(r: RepairReport, renderChecks: (v: VerifyResult) => string, renderScan: (d: DriftReport) => string): string {
  const lines: string[] = [];
  if (r.instances.length === 0) lines.push('repair: nothing to repair on any instance');
  for (const i of r.instances) {
    if (i.state === 'repaired') lines.push(`${i.instance}: repaired`);
    else lines.push(`${i.instance}: NOT REPAIRED: ${i.error}`);
    for (const a of i.actions) lines.push(`  - ${a}`);
  }
  for (const n of r.notRepaired) lines.push(`not repaired: ${n}`);
  if (r.verification) lines.push('', renderChecks(r.verification));
  if (r.after && r.after !== r.before) lines.push('', 'after the repair:', renderScan(r.after));
  return lines.join('\n');
}
