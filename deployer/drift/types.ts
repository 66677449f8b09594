/**
 * The vocabulary of a drift scan: the kinds of difference (DriftKind), one named difference
 * (DriftItem), one instance's findings (InstanceDrift), the release an instance should run
 * (ExpectedRelease), the fleet-wide report (DriftReport), what a repair needs from a scan
 * (DriftScan) and the scan's options (DriftOptions). Types only: the scan is in scan.ts, the
 * per-instance comparison in compare.ts, the manifest trust rule in trust.ts.
 */
import type { TransportFactory } from '../fleet/fleet.ts';
import type { Manifest } from '../build/manifest.ts';
import type { ProxyAdminClient, ProxyInstanceStatus } from '../balancer/admin-client.ts';
import type { FleetVerdict } from '../../verdict/fleet-verdict.ts';

export type DriftKind =
  /** `current` does not exist. */
  | 'no-current'
  /** `current` is not a link to a complete release (missing dir, bad manifest, staging dir...). */
  | 'incomplete-current'
  /** `current` is a complete release, but not the expected one (by id or digest). */
  | 'different-release'
  /** Files of the active release differ from its manifest. */
  | 'files'
  /** Nothing answers the app's version path. */
  | 'process-down'
  /** The process answers /version but its health path is not 200. */
  | 'process-unhealthy'
  /** The process serves a digest other than the one `current` holds on disk. */
  | 'process-digest'
  /** The fleet's rollback target is absent (or its manifest is wrong) on this instance. */
  | 'rollback-target'
  /** A hashed asset of the expected release or the rollback target is missing from (or wrong in) the asset store. */
  | 'asset-store'
  /** The proxy has no upstream for this instance. */
  | 'proxy-missing'
  /** The proxy's upstream URL for this instance differs from the inventory's. */
  | 'proxy-url'
  /** The proxy has the instance draining or disabled while no deploy holds the lock. */
  | 'proxy-state'
  /** The proxy balances over an upstream the inventory does not list. */
  | 'proxy-extra'
  /** The instance's deploy lock is stale (its holder is dead or past the TTL): see drift/stale-lock.ts. */
  | 'stale-lock'
  /** The process's config fingerprint differs from the other instances' (drift/fingerprint.ts). */
  | 'config-fingerprint'
  /** The process runs another session store than the inventory's `app.session_store`. */
  | 'session-store';

/** One named difference. `detail` carries the machine-readable facts (paths, digests, pids). */
export interface DriftItem {
  kind: DriftKind;
  message: string;
  detail?: Record<string, unknown>;
}

export interface InstanceDrift {
  instance: string;
  /** `unchecked`: the instance could not be reached or read (see `error`). */
  status: 'ok' | 'drift' | 'unchecked';
  error?: string;
  /** Where `current` points and the release/digest its manifest holds (null when incomplete). */
  current: { target: string | null; release: string | null; digest: string | null };
  /** What the running process reports on the version path (null: nothing answered). */
  running: {
    release: string | null;
    digest: string | null;
    pid: number | null;
    /** "local" | "redis" as the process reports it; null when it does not (an older release). */
    session_store?: string | null;
    /** sha256 of the process's effective configuration and secrets (never a value); null when not reported. */
    config_fingerprint?: string | null;
  } | null;
  healthy: boolean;
  /** The proxy's view of the instance (null: no proxy, proxy unreachable, or not in the proxy). */
  proxy: ProxyInstanceStatus | null;
  /** Deploy lock holder on this instance (token removed), or null. */
  lock: Record<string, unknown> | null;
  items: DriftItem[];
}

export interface ExpectedRelease {
  release: string;
  digest: string;
  /** `history`: newest activation/rollback in the merged history; `option`: named by the caller. */
  from: 'history' | 'option';
}

export interface DriftReport {
  expected: ExpectedRelease;
  /** Release a `lockstep rollback` should go to (newest earlier success not rolled back from), or null. */
  rollbackTarget: string | null;
  instances: InstanceDrift[];
  /** Proxy-level items (upstreams the inventory does not list). */
  fleet: DriftItem[];
  /** `ok`, `none` (no proxy in the inventory) or why the admin API could not be read. */
  proxy: { status: 'ok' | 'none' | 'unchecked'; error?: string };
  /** The config fingerprint most instances report (null: none reported, or no majority). */
  configFingerprint?: string | null;
  /** True when some instance holds a LIVE deploy lock (a deploy may be in progress); stale locks are `stale-lock` items. */
  lockHeld: boolean;
  /** 0 no drift, 1 drift found, 3 an instance (or the proxy) could not be checked. */
  exitCode: 0 | 1 | 3;
  durationMs: number;
  /** What the fleet serves, by the one verdict function `status` and the dashboard use (drift/verdict.ts). */
  verdict?: FleetVerdict;
}

/** What a drift scan found plus what a repair needs: the trusted manifest of the expected release. */
export interface DriftScan {
  report: DriftReport;
  /** Manifest of the expected release whose file list hashes to the expected digest, or null. */
  manifest: Manifest | null;
  /** Local artifact file for that manifest (dist/artifacts), when present. */
  localArtifact: string | null;
  /** Manifest of the rollback target (same trust rule), or null. */
  rollbackManifest: Manifest | null;
  rollbackArtifact: string | null;
}

export interface DriftOptions {
  /** Expected release: an id, `latest`, or a manifest path. Default: from the history. */
  release?: string;
  factory?: TransportFactory;
  /** Proxy admin client; default from the inventory; null to skip the proxy checks. */
  proxyClient?: ProxyAdminClient | null;
  /** The `id` of a lock the caller holds (a repair's rescan): that lock is not "a deploy in progress". */
  ownLockId?: string;
  /**
   * Report (and repair) only these instances (`--instances`, fleet/selection.ts). The expected
   * release and the rollback target are still decided from the whole fleet's history: a subset's
   * drift is the fleet's drift report restricted to the subset.
   */
  instances?: string[];
}
