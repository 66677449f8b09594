/**
 * Passive ejection: the request path reports each proxied request's outcome; an instance whose
 * requests fail `consecutiveFailures` times in a row (connect errors, resets, timeouts, 5xx) is
 * taken out of rotation for a back-off, then probed with one health check: back in rotation when
 * it passes, out again for twice as long when it fails (up to `maxEjectMs`). The periodic health
 * checks seeing it recover (unhealthy -> healthy) also end the ejection at once. Active checks notice
 * a dead instance within interval x fall; this reacts within a few requests, and catches an
 * instance whose health endpoint is fine while real requests fail.
 *
 * It never ejects the last instance able to serve: better a struggling instance than a 503 for all.
 */
import type { PassiveEjectionConfig } from './config.ts';
import type { UpstreamPool } from './pool.ts';
import type { Upstream } from './upstream.ts';

/** Where a worker sends its ejection decisions: to the primary, which owns ejection state. */
export interface EjectionDelegate {
  /** `u` failed `consecutiveFailures` times in a row here. */
  eject(u: Upstream, reason: string): void;
  /** `u` served a request successfully after a back-off. */
  recovered(u: Upstream): void;
}

/** Takes instances out after failed requests and lets them back after a passing probe (see the module comment). */
export class PassiveEjector {
  private stopped = false;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly config: PassiveEjectionConfig,
    /** One active health check of the instance: true when it passes. */
    private readonly probe: (u: Upstream) => Promise<boolean>,
    private readonly onEject: (u: Upstream) => void = () => undefined,
    /**
     * Workers pass this: decisions are reported (to the primary, which owns ejection state)
     * instead of taken locally.
     */
    private readonly delegate: EjectionDelegate | null = null,
  ) {}

  /** A request to `u` got a response that is not a 5xx. Hot path: two field writes at most. */
  recordSuccess(u: Upstream): void {
    if (u.consecutiveFailures !== 0) u.consecutiveFailures = 0;
    if (u.ejections !== 0 && !u.ejected) {
      // Serving again after a back-off: the next ejection starts from the base back-off.
      u.ejections = 0;
      this.delegate?.recovered(u);
    }
  }

  /** A worker saw `u` serve successfully after its back-off (see recordSuccess). */
  recovered(u: Upstream): void {
    if (!u.ejected) u.ejections = 0;
  }

  /** A request to `u` failed (no usable response, or a 5xx). */
  recordFailure(u: Upstream): void {
    u.consecutiveFailures++;
    const threshold = this.config.consecutiveFailures;
    if (threshold === 0 || u.ejected || u.consecutiveFailures < threshold || this.stopped) return;
    const reason = `${u.consecutiveFailures} failed requests in a row`;
    if (this.delegate !== null) {
      u.consecutiveFailures = 0;
      this.delegate.eject(u, reason);
      return;
    }
    this.ejectNow(u, reason);
  }

  /** Eject `u` now (unless it is out already or the last instance able to serve). */
  ejectNow(u: Upstream, reason: string): void {
    if (u.ejected || this.stopped || !this.pool.hasAlternativeTo(u)) return;
    this.eject(u, reason);
  }

  private eject(u: Upstream, reason: string): void {
    const backoffMs = Math.min(this.config.baseEjectMs * 2 ** Math.min(u.ejections, 30), this.config.maxEjectMs);
    u.ejected = true;
    u.ejections++;
    this.pool.logEjection(u, { reason, backoffMs });
    this.onEject(u);
    u.ejectTimer = setTimeout(() => void this.probeAfterBackoff(u), backoffMs);
    u.ejectTimer.unref();
  }

  private async probeAfterBackoff(u: Upstream): Promise<void> {
    u.ejectTimer = null;
    if (this.stopped || this.pool.get(u.name) !== u) return;
    const ok = await this.probe(u);
    if (this.stopped || this.pool.get(u.name) !== u) return;
    if (ok) {
      u.ejected = false;
      u.consecutiveFailures = 0;
      this.pool.logEjection(u, { probe: 'passed' });
    } else {
      u.ejected = false; // re-eject with a longer back-off; eject() sets it again
      this.eject(u, 'probe after back-off failed');
    }
  }

  /**
   * The active health checks saw `u` come back (unhealthy -> healthy): end its ejection now and
   * forget its back-off history. Without this, an instance that was down for a while stayed out for
   * its whole doubled back-off after it recovered (35 s down: 26.5 s more at half capacity). An
   * instance whose checks pass all along while its requests fail never makes this transition, so
   * passive ejection still catches it.
   */
  healthRecovered(u: Upstream): void {
    if (!u.ejected || this.stopped) return;
    if (u.ejectTimer) clearTimeout(u.ejectTimer);
    u.ejectTimer = null;
    u.ejected = false;
    u.ejections = 0;
    u.consecutiveFailures = 0;
    this.pool.logEjection(u, { health: 'passed' });
  }

  /** Cancel every back-off timer (shutdown). */
  stop(): void {
    this.stopped = true;
    for (const u of this.pool.upstreams) {
      if (u.ejectTimer) clearTimeout(u.ejectTimer);
      u.ejectTimer = null;
    }
  }
}
