/**
 * `lockstep deploy`: push one identical artifact to every instance, verify it on each host,
 * then roll it out through the proxy, rolling back by itself when a batch fails.
 *
 * Phase 0 preflight (changes nothing) -> lock every instance (all or nothing) ->
 * phase 1 on every instance (upload unless present, verify sha256 on the host, unpack, verify
 * every file, link shared dirs, publish the hashed assets into the asset store) -> phase 2
 * rollout in batches -> retention (releases, then the asset store) -> post-deploy verification.
 */
import { buildRelease } from '../build/build.ts';
import { LockHeldError, LockstepError } from '../../config/errors.ts';
import { lockFleetWaiting, newLockHolder, unlockFleet } from '../fleet/lock.ts';
import { openFleet, reasonOf, type Fleet, type TransportFactory } from '../fleet/fleet.ts';
import type { Inventory } from '../../config/inventory.ts';
import { loadLocalRelease, type LocalRelease } from '../build/release-source.ts';
import { pruneFleet } from '../fleet/retention.ts';
import { checkFreeSpace } from '../fleet/disk.ts';
import { publishPresentReleases, publishReleaseAssets, pruneFleetAssets } from '../fleet/assets.ts';
import * as cmd from '../remote/commands.ts';
import { succeeded } from '../transport/types.ts';
import type { Manifest } from '../build/manifest.ts';
import { runLocalHook } from './hooks.ts';
import { planBatches, type InstanceOutcome, type ProxyControl } from './rollout.ts';
import { describeFleetState, runFleetRollout } from './run.ts';
import { withHeartbeat } from './heartbeat.ts';

export interface DeployInstanceReport extends InstanceOutcome {
  /** Bytes uploaded (0 when the host already had the artifact). */
  uploadedBytes: number;
  /** True when releases/<id> already existed and verified. */
  reused: boolean;
  /** True when the artifact upload to this instance failed (shown as such, not as skipped). */
  uploadFailed?: boolean;
}

export interface DeployReport {
  ok: boolean;
  release: string;
  digest: string;
  /** The phase that failed, or 'done'. */
  phase: 'pre-deploy' | 'preflight' | 'lock' | 'prepare' | 'rollout' | 'post-deploy' | 'plan' | 'done';
  instances: DeployInstanceReport[];
  failure?: string;
  /** What state the fleet was left in, in one sentence. */
  state: string;
  durationMs: number;
  /** With dryRun: what would happen, and nothing was changed. */
  plan?: DeployPlan;
}

/** What a deploy would do (`--dry-run`). */
export interface DeployPlan {
  batches: string[][];
  instances: { instance: string; current: string | null; upload: boolean; unpack: boolean; activate: boolean }[];
}

export interface DeployOptions {
  /** Deploy an already-built release (id, `latest`, or manifest path) instead of building. */
  release?: string;
  factory?: TransportFactory;
  proxy?: ProxyControl;
  progress?: (instance: string, line: string, phase?: string) => void;
  /** Abort (Ctrl-C/SIGTERM): the step in progress finishes, switched instances roll back, the lock is released. */
  signal?: AbortSignal;
  message?: string;
  /** Print the plan after preflight and change nothing. */
  dryRun?: boolean;
  /** Wait up to this many ms for a held lock instead of failing at once. */
  lockWaitMs?: number;
  /**
   * Activate only these instances (`--instances`, fleet/selection.ts). The lock, preflight and
   * phase 1 (upload, unpack, verify, asset store) still cover the whole fleet, so the release is
   * present everywhere and a page of either release finds its assets on every instance.
   */
  instances?: string[];
}

/** The dry-run plan: read-only look at each instance (artifact and release present?). */
async function planDeploy(fleet: Fleet, manifest: Manifest, rows: Map<string, DeployInstanceReport>, only?: string[]): Promise<DeployPlan> {
  const instances = await Promise.all(
    fleet.ops.map(async (o) => {
      const present = (await o.run(cmd.artifactHash(o.layout, manifest.digest))).trim() === manifest.artifact.sha256;
      const unpacked = succeeded(await o.transport.exec(cmd.releaseExists(o.layout, manifest.release)));
      const current = rows.get(o.name)!.before;
      const selected = !only || only.includes(o.name);
      return { instance: o.name, current, upload: !present, unpack: !unpacked, activate: selected && current !== manifest.release };
    }),
  );
  const batches = planBatches(
    instances.filter((i) => i.activate).map((i) => i.instance),
    fleet.inventory.deploy.batch_size,
    fleet.inventory.deploy.canary,
  );
  return { batches, instances };
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
  const hooks = inventory.deploy.hooks;
  if (hooks.pre_deploy && !options.dryRun) {
    progress('hooks', 'running pre_deploy hook');
    try {
      await runLocalHook(inventory, 'pre_deploy', hooks.pre_deploy, manifest);
    } catch (e) {
      return {
        ok: false, release: manifest.release, digest: manifest.digest, phase: 'pre-deploy', instances: [],
        failure: (e as Error).message, state: 'no instance was changed', durationMs: Date.now() - started,
      };
    }
  }
  if (options.signal?.aborted) {
    return {
      ok: false, release: manifest.release, digest: manifest.digest, phase: 'preflight', instances: [],
      failure: 'interrupted (signal) before any change', state: 'no instance was changed', durationMs: Date.now() - started,
    };
  }
  const fleet = openFleet(inventory, { factory: options.factory, audit: { operation: 'deploy', message: options.message } });
  for (const o of fleet.ops) o.noteSource(manifest);
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
      await checkFreeSpace(o, manifest, inventory.deploy.free_space_margin_bytes);
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

    if (options.signal?.aborted) return report('preflight', false, 'no instance was changed', 'interrupted (signal) before any change');
    if (options.dryRun) {
      const plan = await planDeploy(fleet, manifest, rows, options.instances);
      return { ...report('plan', true, 'dry run: nothing was changed'), plan };
    }

    const holder = newLockHolder(manifest.release, options.message);
    try {
      await lockFleetWaiting(fleet, holder, options.lockWaitMs ?? 0, progress, options.signal);
    } catch (e) {
      if (e instanceof LockHeldError) return report('lock', false, 'no instance was changed', options.signal?.aborted ? `interrupted (signal) while waiting for the lock: ${e.message}` : e.message);
      throw e;
    }
    try {
      // Take the lock, then read: another deploy may have changed the fleet while this one
      // waited, and a failed batch must go back to what each instance serves now.
      const reread = await fleet.each(async (o) => {
        const row = rows.get(o.name)!;
        const [{ current }, running] = await Promise.all([o.preflight(), o.readVersion().catch(() => null)]);
        if (current !== row.before) progress(o.name, `changed while waiting for the lock: current ${row.before ?? 'none'} -> ${current ?? 'none'}`);
        progress(o.name, `under the lock: current ${current ?? 'none'}; process serves ${running?.release ?? 'nothing'}`);
        row.before = current;
        row.now = current;
      });
      const rereadFailed = reread.map((r, i) => ({ r, o: fleet.ops[i]! })).filter(({ r }) => r.status === 'rejected');
      if (rereadFailed.length > 0) {
        for (const { r, o } of rereadFailed) rows.get(o.name)!.error = reasonOf(r);
        return report('preflight', false, 'no instance was changed', `reading the fleet under the lock failed on ${rereadFailed.map(({ o }) => o.name).join(', ')}: ${reasonOf(rereadFailed[0]!.r)}`);
      }
      if (options.signal?.aborted) return report('lock', false, 'no instance was changed', 'interrupted (signal) before any change');

      // Phase 1: everything short of activation, on every instance.
      const p1 = await fleet.each(async (o) => {
        // The error names the step it failed in (and, through the error itself, the host).
        let step = 'prepare layout';
        try {
          await prepareOne(o, (s) => (step = s));
        } catch (e) {
          if (e instanceof Error && !e.message.toLowerCase().includes(step.toLowerCase())) e.message = `${step}: ${e.message}`;
          throw e;
        }
      });
      async function prepareOne(o: Fleet['ops'][number], setStep: (s: string) => void): Promise<void> {
        const row = rows.get(o.name)!;
        const leftovers = await o.prepare();
        if (leftovers.length) progress(o.name, `removed leftovers of killed deploys: ${leftovers.join(', ')}`);
        setStep('upload artifact');
        progress(o.name, `uploading artifact (${manifest.artifact.bytes} bytes) unless present`);
        const up = await withHeartbeat(
          (l) => progress(o.name, l),
          'the artifact upload and its sha256 check on the host',
          o.uploadArtifact(release.artifact, manifest, {
            signal: options.signal,
            onRetry: (why) => progress(o.name, `upload failed, retrying once: ${why}`),
            onPhase: (phase) => progress(o.name, phase === 'upload' ? 'uploading' : 'checking sha256 on the host', phase),
          }),
        ).catch((e: Error) => {
          row.uploadFailed = true;
          throw e;
        });
        row.uploadedBytes = up.bytes;
        progress(o.name, up.uploaded ? `uploaded ${up.bytes} bytes, sha256 verified on host` : 'artifact already on host (sha256 verified), upload skipped');
        setStep('unpack and verify release');
        const { reused } = await withHeartbeat((l) => progress(o.name, l), 'unpack and file verification', o.unpackRelease(manifest, (phase) => progress(o.name, phase === 'unpack' ? 'unpacking' : 'verifying files on the host', phase)));
        row.reused = reused;
        progress(o.name, reused ? `releases/${manifest.release} present and verified` : `unpacked releases/${manifest.release}, ${manifest.files.length} files verified on host`);
        setStep('link shared dirs');
        progress(o.name, 'linking shared dirs, publishing hashed assets', 'assets');
        await o.linkShared(manifest.release);
        // Before any activation, every instance can serve the new release's hashed assets (and
        // those of what the fleet runs now): a page from either release loads from any instance.
        setStep('publish assets');
        const added = await publishReleaseAssets(o, manifest);
        progress(o.name, `asset store: ${added.length} new hashed asset(s) of ${manifest.release} published`);
        const running = [...new Set([...rows.values()].map((r) => r.before))].filter((id): id is string => !!id && id !== manifest.release);
        for (const w of await publishPresentReleases(o, running)) progress(o.name, `WARNING: ${w}`);
        if (hooks.before_activate) {
          setStep('before_activate hook');
          progress(o.name, 'running before_activate hook', 'hook');
          await o.runHook(hooks.before_activate, 'before_activate', manifest, `${o.layout.releases}/${manifest.release}`).catch(async (e: Error) => {
            await o.appendHistory({ event: 'failed', release: manifest.release, digest: manifest.digest, previous: row.before, hook: 'before_activate', error: e.message }).catch(() => {});
            throw e;
          });
        }
      }
      for (const [i, o] of fleet.ops.entries()) if (p1[i]!.status === 'fulfilled') progress(o.name, 'prepared; waiting for its batch', '-');
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

      if (options.signal?.aborted) {
        return report('prepare', false, 'no instance was activated: every instance still serves the release it served before', 'interrupted (signal) before any activation');
      }

      // Phase 2: rollout.
      const result = await runFleetRollout({
        fleet,
        holder,
        manifest,
        ops: options.instances ? fleet.ops.filter((o) => options.instances!.includes(o.name)) : undefined,
        previous: new Map([...rows.values()].map((r) => [r.instance, r.before])),
        signal: options.signal,
        proxy: options.proxy,
        progress,
      });
      for (const out of result.outcomes) Object.assign(rows.get(out.instance)!, out);
      // A partial deploy: the sentence covers the whole fleet, not only the instances it touched.
      const state = options.instances ? describeFleetState([...rows.values()], result.ok) : result.state;
      if (!result.ok) return report('rollout', false, state, result.failure);
      const pruned = await pruneFleet(fleet, inventory.deploy.keep_releases, manifest.release).catch((e: Error) => ({ skipped: e.message, removed: new Map<string, string[]>() }));
      if (pruned.skipped) progress('retention', `pruning old releases: ${pruned.skipped} (nothing else affected)`);
      for (const [name, removed] of pruned.removed) if (removed.length) progress(name, `retention removed ${removed.join(', ')}`);
      const assets = await pruneFleetAssets(fleet, [manifest]).catch((e: Error) => ({ removed: new Map<string, string[]>(), skipped: e.message }));
      if (assets.skipped) progress('retention', `asset store not pruned (nothing removed anywhere): ${assets.skipped}`);
      for (const [name, removed] of assets.removed) if (removed.length) progress(name, `asset store: retention removed ${removed.length} asset(s) no kept release references`);
      if (hooks.post_deploy) {
        progress('hooks', 'running post_deploy hook');
        try {
          await runLocalHook(inventory, 'post_deploy', hooks.post_deploy, manifest);
        } catch (e) {
          return report('post-deploy', false, `${options.instances ? state : `every instance serves ${manifest.release}`}; only the post_deploy hook failed`, (e as Error).message);
        }
      }
      return report('done', true, options.instances ? state : `every instance serves ${manifest.release}`);
    } finally {
      await unlockFleet(fleet, String(holder.token), progress);
    }
  } catch (e) {
    if (e instanceof LockstepError && e.exitCode === 2) throw e;
    return report('rollout', false, 'unknown: see the error; run `lockstep status`', (e as Error).message);
  } finally {
    await fleet.close();
  }
}
