/**
 * Phase 2 of a deploy: activate a release across the fleet in batches through the proxy
 * (drain, switch, restart, health + version gate, enable), and roll the switched instances back
 * by itself when a batch fails. It does not know how instances are reached.
 */
import type { InstanceOps } from '../fleet/instance.ts';
import type { Manifest } from '../build/manifest.ts';
import type { Inventory } from '../../config/inventory.ts';
import { startAnnouncement, type RolloutAnnouncer } from './announce.ts';
import { withHeartbeat } from './heartbeat.ts';
import { waitStable } from './stability.ts';

/** What the rollout needs from the proxy; the deployer's proxy client implements it. */
export interface ProxyControl extends Partial<RolloutAnnouncer> {
  /**
   * True when the proxy has this instance, after adding it (admin reload) when it did not;
   * false when it still does not (then it gets no traffic, and there is nothing to drain).
   */
  ensureKnown(name: string): Promise<boolean>;
  /** Stop new work to an instance and wait (up to timeoutMs) for in-flight requests. */
  drain(name: string, timeoutMs: number): Promise<{ drained: boolean }>;
  /** Send work to an instance again, and wait (up to timeoutMs) until the proxy finds it healthy. */
  enable(name: string, timeoutMs: number): Promise<void>;
}

export type InstanceState = 'activated' | 'unchanged' | 'rolled-back' | 'untouched' | 'failed' | 'unknown';

export interface InstanceOutcome {
  instance: string;
  /** Release before this rollout (null: none). */
  before: string | null;
  /** Release the instance serves now, as far as we know. */
  now: string | null;
  state: InstanceState;
  error?: string;
  /** True when the instance could not be reached to read what it serves (`now` is then unknown). */
  unreachable?: boolean;
  /** True when the rollout drained it in the proxy and could not enable it again. */
  draining?: boolean;
}

export interface RolloutResult {
  ok: boolean;
  outcomes: InstanceOutcome[];
  /** The error that stopped the rollout, if any. */
  failure?: string;
}

/** How a rollout proceeds, from the inventory's `deploy` section. */
export interface RolloutSettings {
  /** A count, or a percentage of the fleet such as "50%". */
  batchSize: number | string;
  /** Activate one instance alone first. */
  canary: boolean;
  /** Pause between two batches, ms. */
  pauseMs: number;
  activationTimeoutMs: number;
  drainTimeoutMs: number;
  /** After the gates, the instance must stay healthy (same process) this long, ms; 0: off. */
  stabilityWindowMs: number;
  /** Remote command run in `current` after each instance passed its gates. */
  afterActivate?: string;
}

/** Rollout settings from an inventory's `deploy` section. */
export function rolloutSettings(deploy: Inventory['deploy']): RolloutSettings {
  return {
    batchSize: deploy.batch_size,
    canary: deploy.canary,
    pauseMs: deploy.pause_ms,
    activationTimeoutMs: deploy.activation_timeout_ms,
    drainTimeoutMs: deploy.drain_timeout_ms,
    stabilityWindowMs: deploy.stability_window_ms,
    afterActivate: deploy.hooks.after_activate,
  };
}

export interface RolloutOptions extends RolloutSettings {
  ops: InstanceOps[];
  manifest: Manifest;
  /** Release each instance ran before this rollout (by instance name). */
  previous: Map<string, string | null>;
  /** Aborted (Ctrl-C, SIGTERM): finish the step in progress, then roll back what was switched. */
  signal?: AbortSignal;
  /** Called before every batch (the deploy refreshes its lock's heartbeat there). Failures are ignored. */
  beforeBatch?: () => Promise<void>;
  proxy?: ProxyControl;
  progress: (instance: string, line: string, phase?: string) => void;
  /** History event recorded for a successful activation. */
  event?: 'activate' | 'rollback';
  /** Who holds the lock (`user@host pid N`) and the operation (`deploy`, `rollback`, `repair`): announced to the proxy. */
  holder?: string;
  operation?: string;
}

/**
 * Split instances into rollout batches: an optional canary batch of one, then batches of
 * `batchSize` (a count, or a percentage of the whole fleet rounded up, at least 1).
 * @throws Error for a malformed batch size (the inventory schema prevents it).
 */
export function planBatches<T>(items: T[], batchSize: number | string, canary = false): T[][] {
  let size: number;
  if (typeof batchSize === 'number') size = batchSize;
  else {
    const m = /^(\d+)%$/.exec(batchSize);
    if (!m) throw new Error(`invalid batch size ${batchSize}`);
    size = Math.ceil((items.length * Number(m[1])) / 100);
  }
  size = Math.max(1, size);
  const batches: T[][] = [];
  let rest = items;
  if (canary && items.length > 1) {
    batches.push(items.slice(0, 1));
    rest = items.slice(1);
  }
  for (let i = 0; i < rest.length; i += size) batches.push(rest.slice(i, i + size));
  return batches;
}

async function activateOne(o: InstanceOps, id: string, digest: string, opts: RolloutOptions, out: InstanceOutcome): Promise<void> {
  // Every long wait prints a heartbeat line at least every 5 s; each step names its phase.
  const beat = (line: string): void => opts.progress(o.name, line);
  const inProxy = opts.proxy ? await opts.proxy.ensureKnown(o.name) : false;
  if (opts.proxy && inProxy) {
    opts.progress(o.name, 'draining in proxy', 'drain');
    out.draining = true;
    const { drained } = await withHeartbeat(beat, 'requests in flight to finish (drain)', opts.proxy.drain(o.name, opts.drainTimeoutMs), opts.drainTimeoutMs);
    if (!drained) opts.progress(o.name, `drain timeout (${opts.drainTimeoutMs} ms) passed with requests in flight; switching anyway`);
  } else if (opts.proxy) {
    opts.progress(o.name, 'not in the proxy (even after a reload): it gets no traffic there, nothing to drain');
  }
  const replaced = await withHeartbeat(beat, 'the restart command', o.activate(id, (phase) => opts.progress(o.name, phase === 'switch' ? `switching current -> ${id}` : 'restarting (service restart command)', phase)), opts.activationTimeoutMs);
  opts.progress(o.name, 'waiting for health and version gates', 'gates');
  const gated = await withHeartbeat(beat, `${o.inventory.app.health_path} and ${o.inventory.app.version_path} (health and version gates)`, o.waitForGates(digest, opts.activationTimeoutMs, replaced), opts.activationTimeoutMs);
  if (opts.stabilityWindowMs > 0) {
    opts.progress(o.name, `gates passed; staying healthy for ${opts.stabilityWindowMs} ms (stability window)`, 'gates');
    await waitStable(o, gated, opts.stabilityWindowMs, opts.signal);
  }
  if (opts.afterActivate) {
    opts.progress(o.name, 'running after_activate hook', 'hook');
    await withHeartbeat(beat, 'the after_activate hook', o.runHook(opts.afterActivate, 'after_activate', { release: id, digest }), opts.activationTimeoutMs);
  }
  if (opts.proxy && inProxy) {
    opts.progress(o.name, 'enabling in proxy, waiting for its health checks', 'enable');
    await withHeartbeat(beat, 'the proxy to find it healthy', opts.proxy.enable(o.name, opts.activationTimeoutMs), opts.activationTimeoutMs);
    out.draining = false;
    opts.progress(o.name, 'enabled in proxy', '-');
  } else opts.progress(o.name, 'gates passed', '-');
}

/** What `current` points at now; null with `out.unreachable` set when the host cannot be asked. */
async function readNow(o: InstanceOps, out: InstanceOutcome): Promise<string | null> {
  try {
    const now = await o.currentRelease();
    out.unreachable = false;
    return now;
  } catch {
    out.unreachable = true;
    return null;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

/**
 * Roll `manifest` out batch by batch. When a batch fails, every instance switched so far
 * (including the failed batch) is put back on its previous release with the same gates, in the
 * same batches, last batch first (see `rollBack`).
 * @returns per-instance outcomes; `ok` only when every instance passed its gates.
 * Never throws for an instance failure: failures are in the outcomes.
 */
export async function rollout(options: RolloutOptions): Promise<RolloutResult> {
  const { manifest } = options;
  const outcomes = new Map<string, InstanceOutcome>(
    options.ops.map((o) => [o.name, { instance: o.name, before: options.previous.get(o.name) ?? null, now: options.previous.get(o.name) ?? null, state: 'untouched' }]),
  );
  const serving = (): number => [...outcomes.values()].filter((o) => o.now === manifest.release && o.state !== 'unknown' && o.state !== 'failed').length;
  const announcer = options.proxy?.announce ? (options.proxy as RolloutAnnouncer) : undefined;
  const announcement = startAnnouncement(announcer, {
    release: manifest.release,
    holder: options.holder ?? 'unknown holder',
    operation: options.operation,
    done: options.ops.filter((o) => options.previous.get(o.name) === manifest.release).length,
    total: options.ops.length,
  });
  // Every progress line also refreshes the announcement: the dashboard shows the phase.
  const opts: RolloutOptions = {
    ...options,
    progress: (instance, line, phase) => {
      options.progress(instance, line, phase);
      announcement.update({ done: serving(), phase: `${instance}: ${line}` });
    },
  };
  try {
    return await rolloutAnnounced(opts, outcomes);
  } finally {
    await announcement.end();
  }
}

async function rolloutAnnounced(opts: RolloutOptions, outcomes: Map<string, InstanceOutcome>): Promise<RolloutResult> {
  const { manifest } = opts;
  // Switched instances, by batch: a failure rolls them back in these batches, last batch first.
  const touched: InstanceOps[][] = [];
  let failure: string | undefined;
  const batches = planBatches(opts.ops, opts.batchSize, opts.canary);
  for (const [index, batch] of batches.entries()) {
    if (index > 0 && opts.pauseMs > 0 && !opts.signal?.aborted) {
      opts.progress('rollout', `pausing ${opts.pauseMs} ms before batch ${index + 1}/${batches.length}`);
      await sleep(opts.pauseMs, opts.signal);
    }
    // Checked between batches only: the batch in progress always finishes its step.
    if (opts.signal?.aborted) {
      failure = 'interrupted (signal): the rollout stopped between batches';
      break;
    }
    await opts.beforeBatch?.().catch(() => {});
    const switched: InstanceOps[] = [];
    touched.push(switched);
    const results = await Promise.allSettled(
      batch.map(async (o) => {
        const out = outcomes.get(o.name)!;
        if (out.before === manifest.release && (await o.readVersion())?.digest === manifest.digest && (await o.isHealthy())) {
          // Already switched and running this exact release: converged, nothing to restart.
          out.state = 'unchanged';
          opts.progress(o.name, `already serving ${manifest.release}; not restarted`);
          return;
        }
        switched.push(o);
        out.state = 'unknown';
        try {
          await activateOne(o, manifest.release, manifest.digest, opts, out);
          out.now = manifest.release;
          out.state = 'activated';
          await o.appendHistory({ event: opts.event ?? 'activate', release: manifest.release, digest: manifest.digest, previous: out.before }).catch(() => {});
          opts.progress(o.name, `now serving ${manifest.release}`);
        } catch (e) {
          out.state = 'failed';
          out.error = (e as Error).message;
          out.now = await readNow(o, out);
          await o
            .appendHistory({ event: 'failed', release: manifest.release, digest: manifest.digest, previous: out.before, error: out.error })
            .catch(() => {});
          throw e;
        }
      }),
    );
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) {
      failure = (failed.reason as Error).message;
      break;
    }
  }
  if (failure) await rollBack(touched, outcomes, opts);
  return { ok: !failure, outcomes: [...outcomes.values()], failure };
}

/**
 * Put switched instances back on their previous release in the rollout's own batches, last
 * batch first, with the same gates (drain, switch, restart, health + version, enable and proxy
 * health), so the fleet never has fewer serving instances than during the rollout itself
 * (N - batch size). When a batch cannot be rolled back, the earlier batches are left on the new
 * release, which passed its gates and serves: draining them too would leave fewer instances serving.
 */
async function rollBack(touched: InstanceOps[][], outcomes: Map<string, InstanceOutcome>, opts: RolloutOptions): Promise<void> {
  const batches = touched.filter((b) => b.length > 0).reverse();
  for (const [index, batch] of batches.entries()) {
    if (batches.length > 1) opts.progress('rollout', `rolling back batch ${index + 1}/${batches.length}: ${batch.map((o) => o.name).join(', ')}`);
    const results = await Promise.allSettled(batch.map((o) => rollBackOne(o, outcomes.get(o.name)!, opts)));
    if (results.some((r) => r.status === 'rejected')) {
      for (const o of batches.slice(index + 1).flat()) {
        const out = outcomes.get(o.name)!;
        out.error = `${out.error ? `${out.error}; ` : ''}not rolled back: rolling back ${batch.map((b) => b.name).join(', ')} failed, and draining this instance too would leave fewer instances serving`;
      }
      return;
    }
  }
}

/** Roll one instance back to `out.before`. @throws when the rollback failed (the outcome says how). */
async function rollBackOne(o: InstanceOps, out: InstanceOutcome, opts: RolloutOptions): Promise<void> {
  const target = out.before;
  if (!target) {
    out.error = `${out.error ? `${out.error}; ` : ''}no previous release to roll back to`;
    // It served nothing before this rollout, so leaving it as it is takes no capacity away.
    out.state = out.state === 'activated' ? 'activated' : 'failed';
    return;
  }
  try {
    opts.progress(o.name, `rolling back to ${target}`);
    const prev = JSON.parse(await o.transport.readFile(`${o.layout.releases}/${target}/manifest.json`)) as Manifest;
    await activateOne(o, target, prev.digest, opts, out);
    await o.appendHistory({ event: 'rollback', release: target, digest: prev.digest, previous: opts.manifest.release }).catch(() => {});
    out.now = target;
    out.state = 'rolled-back';
  } catch (e) {
    out.state = 'unknown';
    out.now = await readNow(o, out);
    out.error = `${out.error ? `${out.error}; ` : ''}rollback failed: ${(e as Error).message}`;
    throw e;
  }
}
