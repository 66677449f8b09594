/**
 * Phase 2 of a deploy: activate a release across the fleet in batches through the proxy
 * (drain, switch, restart, health + version gate, enable), and roll the switched instances back
 * by itself when a batch fails. It does not know how instances are reached.
 */
import type { InstanceOps } from './instance.ts';
import type { Manifest } from './manifest-types.ts';

/** What the rollout needs from the proxy; the deployer's proxy client implements it. */
export interface ProxyControl {
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
}

export interface RolloutResult {
  ok: boolean;
  outcomes: InstanceOutcome[];
  /** The error that stopped the rollout, if any. */
  failure?: string;
}

export interface RolloutOptions {
  ops: InstanceOps[];
  manifest: Manifest;
  /** Release each instance ran before this rollout (by instance name). */
  previous: Map<string, string | null>;
  batchSize: number;
  activationTimeoutMs: number;
  drainTimeoutMs: number;
  proxy?: ProxyControl;
  progress: (instance: string, line: string) => void;
  /** History event recorded for a successful activation. */
  event?: 'activate' | 'rollback';
}

/** Split instances into batches of `size` (the last may be smaller). */
export function planBatches<T>(items: T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < items.length; i += size) batches.push(items.slice(i, i + size));
  return batches;
}

async function activateOne(o: InstanceOps, id: string, digest: string, opts: RolloutOptions): Promise<void> {
  if (opts.proxy) {
    opts.progress(o.name, 'draining in proxy');
    const { drained } = await opts.proxy.drain(o.name, opts.drainTimeoutMs);
    if (!drained) opts.progress(o.name, `drain timeout (${opts.drainTimeoutMs} ms) passed with requests in flight; switching anyway`);
  }
  opts.progress(o.name, `switching current -> ${id} and restarting`);
  await o.activate(id);
  opts.progress(o.name, 'waiting for health and version gates');
  await o.waitForGates(digest, opts.activationTimeoutMs);
  if (opts.proxy) {
    await opts.proxy.enable(o.name, opts.activationTimeoutMs);
    opts.progress(o.name, 'enabled in proxy');
  }
}

/**
 * Roll `manifest` out batch by batch. When a batch fails, every instance switched so far
 * (including the failed batch) is put back on its previous release with the same gates.
 * @returns per-instance outcomes; `ok` only when every instance passed its gates.
 * Never throws for an instance failure: failures are in the outcomes.
 */
export async function rollout(opts: RolloutOptions): Promise<RolloutResult> {
  const { manifest } = opts;
  const outcomes = new Map<string, InstanceOutcome>(
    opts.ops.map((o) => [o.name, { instance: o.name, before: opts.previous.get(o.name) ?? null, now: opts.previous.get(o.name) ?? null, state: 'untouched' }]),
  );
  const touched: InstanceOps[] = [];
  let failure: string | undefined;
  for (const batch of planBatches(opts.ops, opts.batchSize)) {
    const results = await Promise.allSettled(
      batch.map(async (o) => {
        const out = outcomes.get(o.name)!;
        if (out.before === manifest.release && (await o.readVersion())?.digest === manifest.digest && (await o.isHealthy())) {
          // Already switched and running this exact release: converged, nothing to restart.
          out.state = 'unchanged';
          opts.progress(o.name, `already serving ${manifest.release}; not restarted`);
          return;
        }
        touched.push(o);
        out.state = 'unknown';
        try {
          await activateOne(o, manifest.release, manifest.digest, opts);
          out.now = manifest.release;
          out.state = 'activated';
          await o.appendHistory({ event: opts.event ?? 'activate', release: manifest.release, digest: manifest.digest, previous: out.before }).catch(() => {});
          opts.progress(o.name, `now serving ${manifest.release}`);
        } catch (e) {
          out.state = 'failed';
          out.error = (e as Error).message;
          out.now = await o.currentRelease().catch(() => null);
          await o
            .appendHistory({ event: 'failed', release: manifest.release, digest: manifest.digest, previous: out.before, message: out.error })
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

async function rollBack(touched: InstanceOps[], outcomes: Map<string, InstanceOutcome>, opts: RolloutOptions): Promise<void> {
  await Promise.allSettled(
    touched.map(async (o) => {
      const out = outcomes.get(o.name)!;
      const target = out.before;
      if (!target) {
        out.error = `${out.error ? `${out.error}; ` : ''}no previous release to roll back to`;
        out.state = out.state === 'activated' ? 'activated' : 'failed';
        return;
      }
      try {
        opts.progress(o.name, `rolling back to ${target}`);
        const prev = JSON.parse(await o.transport.readFile(`${o.layout.releases}/${target}/manifest.json`)) as Manifest;
        await activateOne(o, target, prev.digest, opts);
        await o.appendHistory({ event: 'rollback', release: target, digest: prev.digest, previous: opts.manifest.release }).catch(() => {});
        out.now = target;
        out.state = 'rolled-back';
      } catch (e) {
        out.state = 'unknown';
        out.now = await o.currentRelease().catch(() => null);
        out.error = `${out.error ? `${out.error}; ` : ''}rollback failed: ${(e as Error).message}`;
      }
    }),
  );
}
