/**
 * What the fleet dashboard shows, as data: every instance's proxy status (from the AdminControl, so
 * single-process and worker mode read the same thing), the release and digest it reports on its
 * `/version`, its recent request rate, and whether the fleet is in version parity.
 *
 * Nothing here runs on the request path. The request rate comes from the proxy's own
 * `lockstep_proxy_requests_total` counters (summed across workers by `control.metrics()`), sampled
 * once per second into a small ring buffer while someone is watching.
 */
import http from 'node:http';
import type { AdminControl } from './control.ts';
import type { InstanceState } from './upstream.ts';

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

/**
 * Version parity over the healthy instances: `parity` when they all report the same digest,
 * `drift` when they report different ones, `unknown` when none is healthy or a healthy one did not
 * say which digest it runs.
 */
export interface FleetParity {
  status: 'parity' | 'drift' | 'unknown';
  /** The common release and digest (parity only). */
  release: string | null;
  digest: string | null;
  /** One line for people, e.g. `PARITY: <release>` or `DRIFT: <release 1> on a, c; <release 2> on b`. */
  summary: string;
}

/** The whole picture at one moment. */
export interface FleetSnapshot {
  /** ISO time the snapshot was taken. */
  at: string;
  /** Length of the window the rates are computed over, s (0 before the second sample). */
  rateWindowS: number;
  parity: FleetParity;
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

const short = (digest: string | null): string => (digest === null ? '?' : digest.slice(0, 8));

/** Decide parity from the rows (see FleetParity). */
export function parityOf(instances: readonly Pick<FleetInstance, 'name' | 'healthy' | 'version'>[]): FleetParity {
  const healthy = instances.filter((i) => i.healthy);
  if (healthy.length === 0) return { status: 'unknown', release: null, digest: null, summary: 'NO HEALTHY INSTANCE' };
  const silent = healthy.filter((i) => i.version.digest === null);
  const digests = new Set(healthy.map((i) => i.version.digest).filter((d): d is string => d !== null));
  if (digests.size > 1) {
    // Grouped by digest, most common first: readable with twenty instances, not only three.
    const groups = new Map<string, { label: string; names: string[] }>();
    for (const i of healthy) {
      const key = i.version.digest ?? '';
      const label = i.version.digest === null ? 'no version' : (i.version.release ?? short(i.version.digest));
      const g = groups.get(key) ?? { label, names: [] };
      g.names.push(i.name);
      groups.set(key, g);
    }
    const parts = [...groups.values()].sort((a, b) => b.names.length - a.names.length).map((g) => `${g.label} on ${g.names.join(', ')}`);
    return { status: 'drift', release: null, digest: null, summary: `DRIFT: ${parts.join('; ')}` };
  }
  if (silent.length > 0) {
    return { status: 'unknown', release: null, digest: null, summary: `UNKNOWN: no version from ${silent.map((i) => i.name).join(', ')}` };
  }
  const first = healthy[0]!.version;
  return { status: 'parity', release: first.release, digest: first.digest, summary: `PARITY: ${first.release ?? short(first.digest)}` };
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
  private readonly versions = new Map<string, { atMs: number; url: string; value: Promise<InstanceVersion> }>();
  private samples: Sample[] = [];
  private inProgress: Promise<FleetSnapshot> | null = null;

  constructor(options: FleetSamplerOptions) {
    this.control = options.control;
    this.versionPath = options.versionPath ?? '/version';
    this.versionTimeoutMs = options.versionTimeoutMs ?? 800;
    this.versionCacheMs = options.versionCacheMs ?? 1000;
    this.rateSamples = Math.max(2, options.rateSamples ?? 11);
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
    return { at: new Date(nowMs).toISOString(), rateWindowS: windowS, parity: parityOf(instances), instances };
  }
}
