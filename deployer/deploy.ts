/**
 * `lockstep deploy`: push one identical artifact to every instance, verify it on each host,
 * then roll it out through the proxy, rolling back by itself when a batch fails.
 *
 * Phase 0 preflight (changes nothing) -> lock every instance (all or nothing) ->
 * phase 1 on every instance (upload unless present, verify sha256 on the host, unpack, verify
 * every file, link shared dirs) -> phase 2 rollout in batches -> post-deploy verification.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { buildRelease } from './build.ts';
import { LockHeldError, LockstepError } from './errors.ts';
import { openFleet, reasonOf, type Fleet, type TransportFactory } from './fleet.ts';
import type { InstanceOps } from './instance.ts';
import type { Inventory } from './inventory.ts';
import { loadLocalRelease, type LocalRelease } from './release-source.ts';
import { pruneFleet } from './releases.ts';
import { rollout, type InstanceOutcome, type ProxyControl } from './rollout.ts';

export interface DeployInstanceReport extends InstanceOutcome {
  /** Bytes uploaded (0 when the host already had the artifact). */
  uploadedBytes: number;
  /** True when releases/<id> already existed and verified. */
  reused: boolean;
}

export interface DeployReport {
  ok: boolean;
  release: string;
  digest: string;
  /** The phase that failed, or 'done'. */
  phase: 'preflight' | 'lock' | 'prepare' | 'rollout' | 'done';
  instances: DeployInstanceReport[];
  failure?: string;
  /** What state the fleet was left in, in one sentence. */
  state: string;
  durationMs: number;
}

export interface DeployOptions {
  /** Deploy an already-built release (id, `latest`, or manifest path) instead of building. */
  release?: string;
  factory?: TransportFactory;
  proxy?: ProxyControl;
  progress?: (instance: string, line: string) => void;
  message?: string;
}

/** A lock holder record (written to `.lockstep/lock/holder.json` on every instance). */
export function newLockHolder(release: string, message?: string): Record<string, unknown> {
  return {
    token: randomBytes(16).toString('hex'),
    user: os.userInfo().username,
    machine: os.hostname(),
    pid: process.pid,
    time: new Date().toISOString(),
    release,
    message: message ?? 'deploy',
  };
}

/**
 * Take the lock on every instance, all or nothing: when one is held, the ones already taken
 * are released again. @throws LockHeldError naming the first held instance and its holder.
 */
export async function lockFleet(fleet: Fleet, holder: Record<string, unknown>): Promise<void> {
  const results = await fleet.each(async (o) => {
    await o.acquireLock(holder);
    return o;
  });
  const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
  if (failed) {
    const taken = results.filter((r): r is PromiseFulfilledResult<InstanceOps> => r.status === 'fulfilled').map((r) => r.value);
    await Promise.allSettled(taken.map((o) => o.releaseLock(String(holder.token))));
    throw failed.reason;
  }
}

/** Release the lock on every instance where `token` holds it. Best effort. */
export async function unlockFleet(fleet: Fleet, token: string): Promise<void> {
  await fleet.each((o) => o.releaseLock(token));
}

/**
 * Deploy a release to every instance of the inventory.
 * @returns a report; `ok` false with `phase` and `state` saying what happened and what was left.
 * @throws ConfigError for bad input (exit 2); LockstepError when the build fails.
 */
export async function deploy(inventory: Inventory, options: DeployOptions = {}): Promise<DeployReport> {
  const started = Date.now();
  const progress = options.progress ?? (() => {});
  let release: LocalRelease;
  if (options.release) release = loadLocalRelease(inventory, options.release);
  else {
    const built = await buildRelease(inventory, { onProgress: (l) => progress('build', l) });
    release = { manifest: built.manifest, manifestFile: built.manifestFile, artifact: built.artifact };
  }
  const { manifest } = release;
  const fleet = openFleet(inventory, { factory: options.factory });
  const rows = new Map<string, DeployInstanceReport>(
    fleet.ops.map((o) => [o.name, { instance: o.name, before: null, now: null, state: 'untouched', uploadedBytes: 0, reused: false }]),
  );
  const report = (phase: DeployReport['phase'], ok: boolean, state: string, failure?: string): DeployReport => ({
    ok,
    release: manifest.release,
    digest: manifest.digest,
    phase,
    instances: [...rows.values()],
    failure,
    state,
    durationMs: Date.now() - started,
  });
  try {
    // Phase 0: preflight every instance before changing any.
    const pre = await fleet.each(async (o) => {
      progress(o.name, 'preflight');
      const { current } = await o.preflight();
      const row = rows.get(o.name)!;
      row.before = current;
      row.now = current;
      return current;
    });
    const preFailed = pre.map((r, i) => ({ r, o: fleet.ops[i]! })).filter(({ r }) => r.status === 'rejected');
    if (preFailed.length > 0) {
      for (const { r, o } of preFailed) rows.get(o.name)!.error = reasonOf(r);
      return report('preflight', false, 'no instance was changed', `preflight failed on ${preFailed.map(({ o }) => o.name).join(', ')}: ${reasonOf(preFailed[0]!.r)}`);
    }

    const holder = newLockHolder(manifest.release, options.message);
    try {
      await lockFleet(fleet, holder);
    } catch (e) {
      if (e instanceof LockHeldError) return report('lock', false, 'no instance was changed', e.message);
      throw e;
    }
    try {
      // Phase 1: everything short of activation, on every instance.
      const p1 = await fleet.each(async (o) => {
        const row = rows.get(o.name)!;
        await o.prepare();
        progress(o.name, `uploading artifact (${manifest.artifact.bytes} bytes) unless present`);
        const up = await o.uploadArtifact(release.artifact, manifest);
        row.uploadedBytes = up.bytes;
        progress(o.name, up.uploaded ? `uploaded ${up.bytes} bytes, sha256 verified on host` : 'artifact already on host (sha256 verified), upload skipped');
        const { reused } = await o.unpackRelease(manifest);
        row.reused = reused;
        progress(o.name, reused ? `releases/${manifest.release} present and verified` : `unpacked releases/${manifest.release}, ${manifest.files.length} files verified on host`);
        await o.linkShared(manifest.release);
      });
      const p1Failed = p1.map((r, i) => ({ r, o: fleet.ops[i]! })).filter(({ r }) => r.status === 'rejected');
      if (p1Failed.length > 0) {
        for (const { r, o } of p1Failed) {
          const row = rows.get(o.name)!;
          row.error = reasonOf(r);
          row.state = 'failed';
        }
        return report(
          'prepare',
          false,
          'no instance was activated: every instance still serves the release it served before',
          `preparing the release failed on ${p1Failed.map(({ o }) => o.name).join(', ')}: ${reasonOf(p1Failed[0]!.r)}`,
        );
      }

      // Phase 2: rollout.
      const result = await rollout({
        ops: fleet.ops,
        manifest,
        previous: new Map([...rows.values()].map((r) => [r.instance, r.before])),
        batchSize: inventory.deploy.batch_size,
        activationTimeoutMs: inventory.deploy.activation_timeout_ms,
        drainTimeoutMs: inventory.deploy.drain_timeout_ms,
        proxy: options.proxy,
        progress,
      });
      for (const out of result.outcomes) Object.assign(rows.get(out.instance)!, out);
      if (!result.ok) {
        const releases = new Set(result.outcomes.map((o) => o.now));
        const state =
          releases.size === 1
            ? `rolled back: the whole fleet serves ${[...releases][0] ?? 'nothing'}`
            : `MIXED FLEET: ${result.outcomes.map((o) => `${o.instance}=${o.now ?? 'none'}`).join(', ')}`;
        return report('rollout', false, state, result.failure);
      }
      const pruned = await pruneFleet(fleet, inventory.deploy.keep_releases, [manifest.release]).catch((e: Error) => {
        progress('retention', `pruning old releases failed (nothing else affected): ${e.message}`);
        return new Map<string, string[]>();
      });
      for (const [name, removed] of pruned) if (removed.length) progress(name, `retention removed ${removed.join(', ')}`);
      return report('done', true, `every instance serves ${manifest.release}`);
    } finally {
      await unlockFleet(fleet, String(holder.token));
    }
  } catch (e) {
    if (e instanceof LockstepError && e.exitCode === 2) throw e;
    return report('rollout', false, 'unknown: see the error; run `lockstep status`', (e as Error).message);
  } finally {
    await fleet.close();
  }
}
