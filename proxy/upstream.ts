/**
 * One upstream instance: its address, its admin state (enabled / draining / disabled), its health
 * as seen by the checks, and its in-flight request count. The pool decides who gets traffic; this
 * class only keeps the facts about one instance consistent.
 */

/** Admin state. `draining`: no new unpinned work, in-flight requests finish. `disabled`: no work at all. */
export type InstanceState = 'enabled' | 'draining' | 'disabled';

/** What the admin API reports for one instance. */
export interface UpstreamStatus {
  name: string;
  url: string;
  state: InstanceState;
  healthy: boolean;
  inflight: number;
  /** Taken out by passive ejection (failed requests), waiting for its back-off to end. */
  ejected: boolean;
  /** Requests waiting for this (draining) instance to come back, not counted in `inflight`. */
  held: number;
  weight: number;
}

/** One instance and the facts the proxy keeps about it. */
export class Upstream {
  readonly name: string;
  /** Origin, e.g. `http://127.0.0.1:4101`. */
  readonly url: string;
  /** Parsed once: http-proxy-3 takes a URL target and would otherwise parse a string per request. */
  readonly target: URL;
  /** Per-request options for http-proxy-3, built once per instance instead of once per request. */
  readonly proxyOptions: { target: URL };
  /** The complete `Set-Cookie` value that pins a client here (computed by `affinity.ts`). */
  readonly affinitySetCookie: string;
  /** The signature part of this instance's affinity cookie, compared in constant time. */
  readonly affinitySignature: Buffer;

  state: InstanceState = 'enabled';
  /** Until the first health check answers, an instance is not trusted with traffic. */
  healthy = false;
  /** Requests sent to this instance whose response has not completed (or been aborted). */
  inflight = 0;
  /** Set once the first check has run: the first result decides health directly, without `rise`. */
  checked = false;

  private passes = 0;
  private failures = 0;
  /** Called when in-flight drops to 0; set by `drain.ts` while someone waits for that. */
  onIdle: (() => void) | null = null;

  /** Relative share of new work (balancing). */
  readonly weight: number;
  /** New unpinned work goes elsewhere while this many requests are in flight here. */
  readonly maxConnections: number;
  /** Smooth weighted round robin: this instance's running score (see pool.ts). */
  currentWeight = 0;
  /** Passive ejection: failed requests in a row, whether it is out, and how many back-offs in a row. */
  consecutiveFailures = 0;
  ejected = false;
  ejections = 0;
  ejectTimer: NodeJS.Timeout | null = null;
  /** Requests held for this instance while it drains for a restart (owned by the request path). */
  held = 0;

  constructor(
    name: string,
    url: string,
    affinitySetCookie: string,
    affinitySignature: Buffer,
    options: { weight?: number; maxConnections?: number } = {},
  ) {
    this.name = name;
    this.weight = options.weight ?? 1;
    this.maxConnections = options.maxConnections ?? Infinity;
    this.target = new URL(url);
    this.url = this.target.origin;
    this.proxyOptions = { target: this.target };
    this.affinitySetCookie = affinitySetCookie;
    this.affinitySignature = affinitySignature;
  }

  /** True when the instance may take new, unpinned work. */
  get available(): boolean {
    return this.healthy && !this.ejected && this.state === 'enabled' && this.inflight < this.maxConnections;
  }

  /** True when a request pinned here may be sent here now (connection limits do not move sessions). */
  get servesPinned(): boolean {
    return this.healthy && !this.ejected && this.state === 'enabled';
  }

  /**
   * Record one health check result and apply rise/fall.
   * @returns true when `healthy` changed.
   */
  recordHealthCheck(ok: boolean, rise: number, fall: number): boolean {
    if (!this.checked) {
      this.checked = true;
      this.passes = ok ? 1 : 0;
      this.failures = ok ? 0 : 1;
      const changed = this.healthy !== ok;
      this.healthy = ok;
      return changed;
    }
    if (ok) {
      this.failures = 0;
      this.passes++;
      if (!this.healthy && this.passes >= rise) {
        this.healthy = true;
        return true;
      }
    } else {
      this.passes = 0;
      this.failures++;
      if (this.healthy && this.failures >= fall) {
        this.healthy = false;
        return true;
      }
    }
    return false;
  }

  /** A request was sent here. */
  acquire(): void {
    this.inflight++;
  }

  /** A request sent here completed or was aborted. */
  release(): void {
    this.inflight--;
    if (this.inflight === 0 && this.onIdle !== null) this.onIdle();
  }

  status(): UpstreamStatus {
    return {
      name: this.name,
      url: this.url,
      state: this.state,
      healthy: this.healthy,
      inflight: this.inflight,
      ejected: this.ejected,
      held: this.held,
      weight: this.weight,
    };
  }
}
