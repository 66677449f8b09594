/**
 * What the fleet dashboard shows, as data: every instance's proxy status (from the AdminControl, so
 * single-process and worker mode read the same thing), the release and digest it reports on its
 * `/version`, its recent request rate, the rollout the deployer announced, and the fleet's verdict.
 *
 * Nothing here runs on the request path. The request rate comes from the proxy's own
 * `lockstep_proxy_requests_total` counters (summed across workers by `control.metrics()`), sampled
 * once per second into a small ring buffer while someone is watching.
 */
import http from 'node:http';
import type { AdminControl } from './control.ts';
import type { InstanceState } from './upstream.ts';
import type { RolloutAnnouncement } from './rollout-board.ts';
import { fleetVerdict, type FleetVerdict } from '../verdict/fleet-verdict.ts';

/** What one instance's `/version` said, or why it said nothing usable. */
export interface InstanceVersion {
  release: string | null;
  digest: string | null;
  /** Set when the fetch failed (connection refused, timeout, not JSON, non-200). */
  error?: string;
}

/** One row of the dashboard. */
export interface FleetInstance {
  name: string;
  url: string;
  state: InstanceState;
  healthy: boolean;
  ejected: boolean;
  inflight: number;
  held: number;
  /** Requests answered per second over the sampling window; null until two samples exist. */
  rate: number | null;
  version: InstanceVersion;
}

/** The whole picture at one moment. */
export interface FleetSnapshot {
  /** ISO time the snapshot was taken. */
  at: string;
  /** Length of the window the rates are computed over, s (0 before the second sample). */
  rateWindowS: number;
  /** The fleet's verdict, by the same function as `lockstep status` and `drift` (verdict/fleet-verdict.ts). */
  verdict: FleetVerdict;
  /** The rollout the deployer announced, or null. */
  rollout: RolloutAnnouncement | null;
  /** When this proxy process started (ISO): a page that sees it change knows the proxy restarted. */
  proxyStartedAt: string;
  instances: FleetInstance[];
}

/** Upper bound on a `/version` body the dashboard reads, bytes. */
const MAX_VERSION_BODY = 64 * 1024;

/**
 * GET `<base><path>` on a fresh connection and read `release` and `digest` from the JSON answer.
 * @param timeoutMs wall-clock bound for the whole exchange, ms.
 * @returns the version; never throws (a failure is reported in `error`).
 */
export function fetchVersion(base: string, path: string, timeoutMs: number): Promise<InstanceVersion> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (v: InstanceVersion): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(v);
    };
    const fail = (error: string): void => done({ release: null, digest: null, error });
    const req = http.get(new URL(path, base), { agent: false, headers: { 'user-agent': 'lockstep-proxy-dashboard', accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        fail(`HTTP ${res.statusCode}`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_VERSION_BODY) {
          fail('answer too large');
          req.destroy();
        } else chunks.push(c);
      });
      res.on('error', () => fail('connection reset'));
      res.on('end', () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { release?: unknown; digest?: unknown };
          const release = typeof body.release === 'string' ? body.release : null;
          const digest = typeof body.digest === 'string' ? body.digest : null;
          done(digest === null ? { release, digest, error: 'no digest in the answer' } : { release, digest });
        } catch {
          fail('answer is not JSON');
        }
      });
    });
    const timer = setTimeout(() => {
      fail(`no answer within ${timeoutMs} ms`);
      req.destroy();
    }, timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
  });
}

/**
 * Sum `lockstep_proxy_requests_total` per instance from Prometheus text (every status class,
 * aborted included; requests the proxy answered without an instance are left out).
 */
export function requestTotalsFromMetrics(text: string): Map<string, number> {
  const totals = new Map<string, number>();
  const re = /^lockstep_proxy_requests_total\{([^}]*)\} (\S+)$/gm;
  for (const m of text.matchAll(re)) {
    const instance = /(?:^|,)instance="([^"]*)"/.exec(m[1]!)?.[1];
    const value = Number(m[2]);
    if (instance === undefined || instance === 'none' || !Number.isFinite(value)) continue;
    totals.set(instance, (totals.get(instance) ?? 0) + value);
  }
  return totals;
}

/**
 * The fleet verdict of the dashboard's rows (verdict/fleet-verdict.ts): each instance's /version,
 * the proxy's state and health checks (an ejected instance is unhealthy), and the announced rollout.
 */
export function verdictOf(instances: readonly Pick<FleetInstance, 'name' | 'healthy' | 'ejected' | 'state' | 'version'>[], rollout: RolloutAnnouncement | null = null): FleetVerdict {
  return fleetVerdict({
    instances: instances.map((i) => ({
      name: i.name,
      release: i.version.release,
      digest: i.version.digest,
      healthy: null,
      versionError: i.version.error ?? null,
      proxyState: i.state,
      proxyHealthy: i.healthy && !i.ejected,
    })),
    rollout: rollout === null ? null : { release: rollout.release, holder: rollout.holder, done: rollout.done, total: rollout.total, operation: rollout.operation, phase: rollout.phase },
  });
}

/** Two counter samples closer than this are not both kept, ms. */
const MIN_SAMPLE_GAP_MS = 500;

interface Sample {
  atMs: number;
  totals: Map<string, number>;
}

/** Where FleetSampler reads from, and how often it may refetch. */
export interface FleetSamplerOptions {
  control: AdminControl;
  /** Path of the app's version endpoint (app contract). Default `/version`. */
  versionPath?: string;
  /** Bound on one `/version` fetch, ms. Default 800. */
  versionTimeoutMs?: number;
  /** A `/version` answer is reused for this long, ms. Default 1000. */
  versionCacheMs?: number;
  /** Samples kept for the rate: the window is (samples - 1) x the sampling interval. Default 11 (~10 s at 1 Hz). */
  rateSamples?: number;
  /** The rollout the deployer announced, or null. Default: none. */
  rollout?: () => RolloutAnnouncement | null;
}


/**
 * Builds FleetSnapshots. `snapshot()` reads the control, the `/version` of every instance (cached
 * for `versionCacheMs`) and the request counters, and records a counter sample for the rate.
 * Concurrent callers share one in-progress snapshot.
 */
export class FleetSampler {
  private readonly control: AdminControl;
  private readonly versionPath: string;
  private readonly versionTimeoutMs: number;
  private readonly versionCacheMs: number;
  private readonly rateSamples: number;
  private readonly rollout: () => RolloutAnnouncement | null;
  /** When this proxy's admin listener (and so this sampler) started, ISO: a page that sees it change knows the proxy restarted. */
  readonly startedAt = new Date().toISOString();
  private readonly versions = new Map<string, { atMs: number; url: string; value: Promise<InstanceVersion> }>();
  private samples: Sample[] = [];
  private inProgress: Promise<FleetSnapshot> | null = null;

  constructor(options: FleetSamplerOptions) {
    this.control = options.control;
    this.versionPath = options.versionPath ?? '/version';
    this.versionTimeoutMs = options.versionTimeoutMs ?? 800;
    this.versionCacheMs = options.versionCacheMs ?? 1000;
    this.rateSamples = Math.max(2, options.rateSamples ?? 11);
    this.rollout = options.rollout ?? (() => null);
  }

  /** Take a snapshot now (or join the one being taken). Errors of the control propagate. */
  snapshot(): Promise<FleetSnapshot> {
    this.inProgress ??= this.take().finally(() => {
      this.inProgress = null;
    });
    return this.inProgress;
  }

  private version(name: string, url: string, nowMs: number): Promise<InstanceVersion> {
    const cached = this.versions.get(name);
    if (cached && cached.url === url && nowMs - cached.atMs < this.versionCacheMs) return cached.value;
    const value = fetchVersion(url, this.versionPath, this.versionTimeoutMs);
    this.versions.set(name, { atMs: nowMs, url, value });
    return value;
  }

  private async take(): Promise<FleetSnapshot> {
    const nowMs = Date.now();
    const [statuses, metrics] = await Promise.all([this.control.instances(), this.control.metrics()]);
    const versions = await Promise.all(statuses.map((s) => this.version(s.name, s.url, nowMs)));
    for (const name of this.versions.keys()) if (!statuses.some((s) => s.name === name)) this.versions.delete(name);

    // Callers close together (several viewers) must not shrink the window to nothing.
    const last = this.samples[this.samples.length - 1];
    if (last === undefined || nowMs - last.atMs >= MIN_SAMPLE_GAP_MS) this.samples.push({ atMs: nowMs, totals: requestTotalsFromMetrics(metrics.text) });
    if (this.samples.length > this.rateSamples) this.samples.splice(0, this.samples.length - this.rateSamples);
    const oldest = this.samples[0]!;
    const newest = this.samples[this.samples.length - 1]!;
    const windowS = (newest.atMs - oldest.atMs) / 1000;

    const instances: FleetInstance[] = statuses.map((s, i) => {
      let rate: number | null = null;
      if (windowS > 0) {
        // A counter that went down (instance removed and re-added) restarts from zero.
        const delta = (newest.totals.get(s.name) ?? 0) - (oldest.totals.get(s.name) ?? 0);
        rate = Math.max(0, delta) / windowS;
      }
      return {
        name: s.name,
        url: s.url,
        state: s.state,
        healthy: s.healthy,
        ejected: s.ejected,
        inflight: s.inflight,
        held: s.held,
        rate,
        version: versions[i]!,
      };
    });
    const rollout = this.rollout();
    return { at: new Date(nowMs).toISOString(), rateWindowS: windowS, verdict: verdictOf(instances, rollout), rollout, proxyStartedAt: this.startedAt, instances };
  }
}
