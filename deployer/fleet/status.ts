/**
 * `lockstep status`: one row per instance with what is on disk, what runs, its health, the
 * proxy's view of it and the lock holder. Read-only: it never changes an instance.
 */
import type { TransportFactory } from './fleet.ts';
import { openFleet, reasonOf } from './fleet.ts';
import type { Inventory } from '../../config/inventory.ts';
import { decideRollbackTarget, readInstanceReleases, type InstanceReleases } from './releases.ts';
import { proxyClientFromInventory, type ProxyAdminClient, type ProxyInstanceStatus } from '../balancer/admin-client.ts';

/** The proxy's view of one instance. `absent`: the proxy has no such upstream; `unreachable`: its admin API did not answer. */
export interface ProxyView {
  state: ProxyInstanceStatus['state'] | 'absent' | 'unreachable';
  /** The proxy's own health checks pass (null when unknown). */
  healthy: boolean | null;
  /** Requests in flight to the instance through the proxy (null when unknown). */
  inflight: number | null;
  error?: string;
}

export interface InstanceStatus {
  instance: string;
  /** SSH reached the host (disk, lock and releases were read); see `ssh` for why not. */
  reachable: boolean;
  /** The SSH source: reachable, or unreachable and why. */
  ssh: { reachable: boolean; error?: string };
  /** Release `current` points at (from its on-disk manifest). */
  current: { release: string; digest: string } | null;
  /** What the running process reports on /version. */
  running: { release: string | null; digest: string | null; pid: number | null } | null;
  /** The app's health path answered 200 (over HTTP, whether or not SSH reached the host). */
  healthy: boolean;
  lock: Record<string, unknown> | null;
  /** The proxy's view; null when the inventory has no proxy. */
  proxy: ProxyView | null;
  /** Why SSH (or reading the host over it) failed; the HTTP and proxy results above still stand. */
  error?: string;
}

/**
 * Read the proxy's view of every instance of the inventory, never throwing: an unreachable admin
 * API (or a refused token) gives every instance `state: 'unreachable'` with the reason.
 * @param client default: the inventory's proxy admin client with a 2 s bound; null when there is no proxy.
 * @returns instance name -> view, or null when the inventory has no proxy.
 */
export async function proxyViews(inventory: Inventory, client?: ProxyAdminClient | null): Promise<Map<string, ProxyView> | null> {
  let c = client;
  if (c === undefined) {
    if (!inventory.proxy) return null;
    try {
      c = proxyClientFromInventory(inventory, process.env, { timeoutMs: 2000 });
    } catch (e) {
      return new Map(inventory.instances.map((i) => [i.name, { state: 'unreachable', healthy: null, inflight: null, error: (e as Error).message }]));
    }
  }
  if (c === null) return null;
  try {
    const list = await c.listInstances();
    return new Map(
      inventory.instances.map((i) => {
        const p = list.find((x) => x.name === i.name);
        return [i.name, p ? { state: p.state, healthy: p.healthy, inflight: p.inflight } : { state: 'absent', healthy: null, inflight: null }];
      }),
    );
  } catch (e) {
    return new Map(inventory.instances.map((i) => [i.name, { state: 'unreachable', healthy: null, inflight: null, error: (e as Error).message }]));
  }
}

/** One cell of text for a proxy view: `enabled, 0 in flight`, `enabled, DOWN, ...`, `not in proxy`, `unreachable`, `-`. */
export function renderProxyView(v: ProxyView | null): string {
  if (!v) return '-';
  if (v.state === 'unreachable') return 'proxy unreachable';
  if (v.state === 'absent') return 'NOT IN PROXY';
  return `${v.state}${v.healthy === false ? ', DOWN' : ''}, ${v.inflight ?? 0} in flight`;
}

/** Every instance's status, and where `lockstep rollback` would go (decideRollbackTarget). */
export interface FleetStatusReport {
  instances: InstanceStatus[];
  /** The rollback target, or null when there is none or an instance could not be read. */
  rollbackTarget: string | null;
}

/**
 * Collect the status of every instance (in parallel, bounded by deploy.concurrency).
 * Unreachable instances are reported, not thrown.
 */
export async function fleetStatus(
  inventory: Inventory,
  options: { factory?: TransportFactory; proxyClient?: ProxyAdminClient | null } = {},
): Promise<InstanceStatus[]> {
  return (await fleetStatusReport(inventory, options)).instances;
}

/**
 * `fleetStatus` plus the rollback target, decided by the same rule as `rollback`, `releases`
 * and `drift` (fleet/releases.ts decideRollbackTarget) from the releases and history read in
 * the same pass. Read-only; never throws for an instance.
 */
export async function fleetStatusReport(
  inventory: Inventory,
  options: { factory?: TransportFactory; proxyClient?: ProxyAdminClient | null } = {},
): Promise<FleetStatusReport> {
  const fleet = openFleet(inventory, { factory: options.factory });
  const infos = new Map<string, InstanceReleases>();
  try {
    const views = proxyViews(inventory, options.proxyClient);
    const results = await fleet.each(async (o) => {
      const row: InstanceStatus = { instance: o.name, reachable: false, ssh: { reachable: false }, current: null, running: null, healthy: false, lock: null, proxy: null };
      // Each source for what it is: the HTTP answers stand even when SSH to the host fails.
      const [version, healthy] = await Promise.all([o.readVersion(), o.isHealthy()]);
      row.healthy = healthy;
      if (version) row.running = { release: version.release ?? null, digest: version.digest ?? null, pid: version.pid ?? null };
      try {
        await o.transport.connect();
      } catch (e) {
        row.error = (e as Error).message;
        row.ssh = { reachable: false, error: row.error };
        return row;
      }
      row.reachable = true;
      row.ssh = { reachable: true };
      try {
        if (await o.currentRelease()) {
          const m = await o.readCurrentManifest().catch(() => null);
          row.current = m ? { release: m.release, digest: m.digest } : null;
        }
        row.lock = await o.readLockHolder(); // without the owner token: a capability, never printed
        const info = await readInstanceReleases(o).catch(() => null);
        if (info) infos.set(o.name, info);
      } catch (e) {
        row.reachable = false;
        row.error = `reading the host over ssh failed: ${(e as Error).message}`;
        row.ssh = { reachable: true, error: row.error };
      }
      return row;
    });
    const proxy = await views;
    const instances = results.map((r, i) => {
      const name = fleet.ops[i]!.name;
      const row: InstanceStatus =
        r.status === 'fulfilled'
          ? r.value
          : { instance: name, reachable: false, ssh: { reachable: false, error: reasonOf(r) }, current: null, running: null, healthy: false, lock: null, proxy: null, error: reasonOf(r) };
      row.proxy = proxy?.get(name) ?? null;
      return row;
    });
    const complete = infos.size === fleet.ops.length;
    return { instances, rollbackTarget: complete ? decideRollbackTarget([...infos.values()]).target : null };
  } finally {
    await fleet.close();
  }
}
