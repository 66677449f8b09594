/**
 * The upstream pool: the set of instances, who gets a new request (balancing), and the admin state
 * changes (drain / enable / disable / reload). Every state change is logged here, in one place.
 */
import type { Logger } from 'pino';
import { affinitySetCookie, signAffinity } from './affinity.ts';
import type { UpstreamConfig } from './config.ts';
import { Upstream, type InstanceState, type UpstreamStatus } from './upstream.ts';

export class UpstreamPool {
  private list: Upstream[] = [];
  private byName = new Map<string, Upstream>();
  private cursor = 0;
  private readonly cookieName: string;
  private readonly secret: string;
  private readonly logger: Logger;

  constructor(upstreams: UpstreamConfig[], options: { cookieName: string; secret: string; logger: Logger }) {
    this.cookieName = options.cookieName;
    this.secret = options.secret;
    this.logger = options.logger;
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
   * Round robin over instances that are healthy and enabled.
   * @returns the instance for a new unpinned request, or undefined when none is available (503).
   */
  pickForNewRequest(): Upstream | undefined {
    const list = this.list;
    const n = list.length;
    for (let i = 0; i < n; i++) {
      const u = list[(this.cursor + i) % n]!;
      if (u.available) {
        this.cursor = (this.cursor + i + 1) % n;
        return u;
      }
    }
    return undefined;
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
    }
    return u;
  }

  /** Log a health transition decided by the checker. */
  logHealthChange(u: Upstream, detail: string): void {
    const level = u.healthy ? 'info' : 'warn';
    this.logger[level]({ instance: u.name, healthy: u.healthy, state: u.state, detail }, u.healthy ? 'instance healthy' : 'instance unhealthy');
  }

  /**
   * Replace the upstream set. Instances whose name and URL are unchanged keep their state, health and
   * in-flight count; new ones start unhealthy until checked; removed ones keep serving the requests
   * already sent to them (those hold a reference) but get nothing new.
   * @returns names added and removed.
   */
  replace(upstreams: UpstreamConfig[]): { added: string[]; removed: string[] } {
    const next: Upstream[] = [];
    const nextByName = new Map<string, Upstream>();
    const added: string[] = [];
    for (const cfg of upstreams) {
      let u = this.byName.get(cfg.name);
      if (!u || u.url !== new URL(cfg.url).origin) {
        const { signature } = signAffinity(this.secret, cfg.name);
        u = new Upstream(cfg.name, cfg.url, affinitySetCookie(this.cookieName, this.secret, cfg.name), signature);
        added.push(cfg.name);
      }
      next.push(u);
      nextByName.set(cfg.name, u);
    }
    const removed: string[] = [];
    for (const u of this.list) {
      if (nextByName.get(u.name) !== u) {
        removed.push(u.name);
        u.wakeIdleWaiters(u.inflight === 0);
      }
    }
    this.list = next;
    this.byName = nextByName;
    this.cursor = 0;
    if (added.length > 0 || removed.length > 0) this.logger.info({ added, removed }, 'upstream set changed');
    return { added, removed };
  }

  status(): UpstreamStatus[] {
    return this.list.map((u) => u.status());
  }
}
