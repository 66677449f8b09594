/**
 * The upstream pool: the set of instances, who gets a new request (balancing), and the admin state
 * changes (drain / enable / disable / reload). Every state change is logged here, in one place.
 */
import type { Logger } from 'pino';
import { affinitySetCookie, signAffinity } from './affinity.ts';
import type { BalanceAlgorithm, UpstreamConfig } from './config.ts';
import { Upstream, type InstanceState, type UpstreamStatus } from './upstream.ts';

/** The instances, their balancing and their admin state. */
export class UpstreamPool {
  private list: Upstream[] = [];
  private byName = new Map<string, Upstream>();
  private readonly cookieName: string;
  private readonly secret: string;
  private readonly logger: Logger;
  private readonly leastConnections: boolean;
  /** Called whenever an instance may take requests again (enabled, healthy, back from ejection). */
  onAvailable: (u: Upstream) => void = () => undefined;

  constructor(
    upstreams: UpstreamConfig[],
    options: { cookieName: string; secret: string; logger: Logger; balance?: BalanceAlgorithm },
  ) {
    this.cookieName = options.cookieName;
    this.secret = options.secret;
    this.logger = options.logger;
    this.leastConnections = options.balance === 'least_connections';
    this.replace(upstreams);
  }

  /** Every instance, in configuration order. Do not mutate. */
  get upstreams(): readonly Upstream[] {
    return this.list;
  }

  get(name: string): Upstream | undefined {
    return this.byName.get(name);
  }

  /** For `verifyAffinity`: the signature an instance's cookie must carry. */
  readonly signatureOf = (name: string): Buffer | undefined => this.byName.get(name)?.affinitySignature;

  /**
   * Choose the instance for a new unpinned request among those available (healthy, enabled, not
   * ejected, under their connection limit).
   *
   * Round robin is nginx's smooth weighted round robin: every pick adds each candidate's weight to
   * its score, takes the highest score and subtracts the total weight from it, which interleaves
   * (weights 5,1,1 give a a b a c a a, not a a a a a b c). Least connections takes the lowest
   * in-flight/weight, ties broken by the same rotation so equal instances still alternate.
   * @param exclude instances that must not be chosen (those a retry moves away from), or null.
   * @returns the instance, or undefined when none is available (503).
   */
  pickForNewRequest(exclude: readonly Upstream[] | null = null): Upstream | undefined {
    const list = this.list;
    let best: Upstream | undefined;
    let total = 0;
    let bestLoad = Infinity;
    for (let i = 0; i < list.length; i++) {
      const u = list[i]!;
      if (!u.available || (exclude !== null && exclude.includes(u))) continue;
      u.currentWeight += u.weight;
      total += u.weight;
      if (this.leastConnections) {
        const load = u.inflight / u.weight;
        if (load < bestLoad || (load === bestLoad && u.currentWeight > best!.currentWeight)) {
          best = u;
          bestLoad = load;
        }
      } else if (best === undefined || u.currentWeight > best.currentWeight) best = u;
    }
    if (best !== undefined) best.currentWeight -= total;
    return best;
  }

  /**
   * Change an instance's admin state.
   * @returns the instance, or undefined when no instance has that name.
   */
  setState(name: string, state: InstanceState, reason = 'admin'): Upstream | undefined {
    const u = this.byName.get(name);
    if (!u) return undefined;
    if (u.state !== state) {
      this.logger.info({ instance: name, from: u.state, to: state, reason, inflight: u.inflight }, 'instance state changed');
      u.state = state;
      if (u.servesPinned || state === 'disabled') this.onAvailable(u);
    }
    return u;
  }

  /** Log a health transition decided by the checker. */
  logHealthChange(u: Upstream, detail: string): void {
    const level = u.healthy ? 'info' : 'warn';
    this.logger[level]({ instance: u.name, healthy: u.healthy, state: u.state, detail }, u.healthy ? 'instance healthy' : 'instance unhealthy');
    if (u.servesPinned) this.onAvailable(u);
  }

  /** True when some instance other than `u` can take new work (passive ejection never empties the pool). */
  hasAlternativeTo(u: Upstream): boolean {
    for (const other of this.list) if (other !== u && other.healthy && !other.ejected && other.state === 'enabled') return true;
    return false;
  }

  /** Log a passive ejection change and wake requests waiting for the instance. */
  logEjection(u: Upstream, detail: Record<string, unknown>): void {
    if (u.ejected) this.logger.warn({ instance: u.name, ...detail }, 'instance ejected after failed requests');
    else {
      this.logger.info({ instance: u.name, ...detail }, 'instance back from ejection');
      if (u.servesPinned) this.onAvailable(u);
    }
  }

  /**
   * Replace the upstream set. Instances whose name and URL are unchanged keep their state, health and
   * in-flight count; new ones start unhealthy until checked; removed ones keep serving the requests
   * already sent to them (those hold a reference) but get nothing new.
   * @returns names added and removed, and the instance objects no longer in the pool (whoever waits
   *   for one of them to drain must be woken by the caller: `drain.ts` wakeIdleWaiters).
   */
  replace(upstreams: UpstreamConfig[]): { added: string[]; removed: string[]; retired: Upstream[] } {
    const next: Upstream[] = [];
    const nextByName = new Map<string, Upstream>();
    const added: string[] = [];
    for (const cfg of upstreams) {
      let u = this.byName.get(cfg.name);
      if (!u || u.url !== new URL(cfg.url).origin || u.weight !== (cfg.weight ?? 1) || u.maxConnections !== (cfg.maxConnections ?? Infinity)) {
        const { signature } = signAffinity(this.secret, cfg.name);
        const previous = u;
        u = new Upstream(cfg.name, cfg.url, affinitySetCookie(this.cookieName, this.secret, cfg.name), signature, cfg);
        // Same instance, new settings: keep what the operator and the checks decided about it.
        if (previous && previous.url === u.url) {
          u.state = previous.state;
          u.healthy = previous.healthy;
          u.checked = previous.checked;
        }
        if (!previous) added.push(cfg.name);
      }
      next.push(u);
      nextByName.set(cfg.name, u);
    }
    const removed: string[] = [];
    const retired: Upstream[] = [];
    const previousList = this.list;
    this.list = next;
    this.byName = nextByName;
    for (const u of previousList) {
      if (nextByName.get(u.name) !== u) {
        if (!nextByName.has(u.name)) removed.push(u.name);
        retired.push(u);
        if (u.ejectTimer) clearTimeout(u.ejectTimer);
        // Requests held for it must move now: it will not come back under this identity.
        u.state = 'disabled';
        this.onAvailable(u);
      }
    }
    if (added.length > 0 || removed.length > 0) this.logger.info({ added, removed }, 'upstream set changed');
    return { added, removed, retired };
  }

  status(): UpstreamStatus[] {
    return this.list.map((u) => u.status());
  }
}
