/**
 * The admin API's control interface (proxy/control.ts, AdminControl) implemented on HAProxy's
 * Runtime API: the same routes, answers and meanings as Lockstep's own engine, so the deployer,
 * `status`, `drift` and the dashboard read HAProxy the same way.
 *
 *   state   enabled = HAProxy READY, draining = DRAIN, disabled = MAINT (admin state bits)
 *   healthy = the server's operational state is running (its health checks pass)
 *   inflight = `show stat` scur + qcur (sessions on the server and queued for it)
 */
import type { AdminControl, DrainOutcome } from '../control.ts';
import type { InstanceState, UpstreamStatus } from '../upstream.ts';
import { HAPROXY_BACKEND } from './config.ts';
import { OP_STATE, parseServersState, parseShowStat, runtimeAction, runtimeCommand, type StatRow } from './runtime.ts';

/** Poll interval of a drain wait, ms. */
const DRAIN_POLL_MS = 50;

/** The instance facts the engine knows from the inventory (URL shown as in Lockstep's engine). */
export interface HaproxyInstanceInfo {
  name: string;
  url: string;
  weight: number;
}

/** What the control needs from the supervisor. */
export interface HaproxyControlOptions {
  socketPath: string;
  /** The current instance list (changes on reload). */
  instances: () => HaproxyInstanceInfo[];
  /** Re-read the inventory, re-render, validate and reload HAProxy. */
  reload?: () => Promise<{ added: string[]; removed: string[] }>;
}

function stateOf(maint: boolean, drain: boolean): InstanceState {
  return maint ? 'disabled' : drain ? 'draining' : 'enabled';
}

/**
 * Build the AdminControl of a supervised HAProxy.
 * @returns the control; every method throws RuntimeApiError when the stats socket fails.
 */
export function haproxyControl(options: HaproxyControlOptions): AdminControl {
  const sock = options.socketPath;

  async function stats(): Promise<Map<string, StatRow>> {
    const rows = parseShowStat(await runtimeCommand(sock, 'show stat'));
    return new Map(rows.filter((r) => r.proxy === HAPROXY_BACKEND && r.name !== 'BACKEND').map((r) => [r.name, r]));
  }

  async function instances(): Promise<UpstreamStatus[]> {
    const [state, stat] = await Promise.all([runtimeCommand(sock, `show servers state ${HAPROXY_BACKEND}`), stats()]);
    const byName = new Map(parseServersState(state).map((s) => [s.name, s]));
    return options.instances().flatMap((i) => {
      const s = byName.get(i.name);
      if (s === undefined) return [];
      const row = stat.get(i.name);
      return [
        {
          name: i.name,
          url: i.url,
          state: stateOf(s.maint, s.drain),
          healthy: s.opState === OP_STATE.running,
          inflight: (row?.scur ?? 0) + (row?.qcur ?? 0),
          ejected: false,
          held: 0,
          weight: i.weight,
        },
      ];
    });
  }

  const known = (name: string): boolean => options.instances().some((i) => i.name === name);

  async function setState(name: string, state: Exclude<InstanceState, 'draining'>): Promise<UpstreamStatus | undefined> {
    if (!known(name)) return undefined;
    await runtimeAction(sock, `set server ${HAPROXY_BACKEND}/${name} state ${state === 'enabled' ? 'ready' : 'maint'}`);
    return (await instances()).find((s) => s.name === name);
  }

  async function drain(name: string, waitMs: number | null): Promise<DrainOutcome | undefined> {
    if (!known(name)) return undefined;
    await runtimeAction(sock, `set server ${HAPROXY_BACKEND}/${name} state drain`);
    const deadline = Date.now() + (waitMs ?? 0);
    for (;;) {
      const me = (await instances()).find((s) => s.name === name);
      if (me === undefined) return undefined;
      if (me.inflight === 0 || waitMs === null || Date.now() >= deadline) return { drained: me.inflight === 0, inflight: me.inflight, state: me.state };
      await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    }
  }

  async function metrics(): Promise<{ contentType: string; text: string }> {
    const stat = await stats();
    const lines = [
      '# HELP lockstep_proxy_requests_total Requests answered, by instance and HTTP status class (from HAProxy show stat)',
      '# TYPE lockstep_proxy_requests_total counter',
    ];
    for (const i of options.instances()) {
      const row = stat.get(i.name);
      if (row === undefined) continue;
      for (const [cls, n] of Object.entries(row.responses)) lines.push(`lockstep_proxy_requests_total{instance="${i.name}",status_class="${cls}"} ${n}`);
    }
    lines.push('# HELP lockstep_proxy_inflight_requests Sessions on and queued for each instance (HAProxy scur + qcur)', '# TYPE lockstep_proxy_inflight_requests gauge');
    for (const i of options.instances()) {
      const row = stat.get(i.name);
      if (row !== undefined) lines.push(`lockstep_proxy_inflight_requests{instance="${i.name}"} ${row.scur + row.qcur}`);
    }
    return { contentType: 'text/plain; version=0.0.4; charset=utf-8', text: `${lines.join('\n')}\n` };
  }

  return { instances, setState, drain, metrics, reload: options.reload };
}
