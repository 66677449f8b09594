/**
 * `lockstep status`: one row per instance with what is on disk, what runs, and its health.
 * Read-only: it never changes an instance.
 */
import type { TransportFactory } from './fleet.ts';
import { openFleet, reasonOf } from './fleet.ts';
import type { Inventory } from './inventory.ts';

export interface InstanceStatus {
  instance: string;
  reachable: boolean;
  /** Release `current` points at (from its on-disk manifest). */
  current: { release: string; digest: string } | null;
  /** What the running process reports on /version. */
  running: { release: string | null; digest: string | null; pid: number | null } | null;
  healthy: boolean;
  lock: Record<string, unknown> | null;
  error?: string;
}

/**
 * Collect the status of every instance (in parallel, bounded by deploy.concurrency).
 * Unreachable instances are reported, not thrown.
 */
export async function fleetStatus(inventory: Inventory, options: { factory?: TransportFactory } = {}): Promise<InstanceStatus[]> {
  const fleet = openFleet(inventory, { factory: options.factory });
  try {
    const results = await fleet.each(async (o) => {
      const row: InstanceStatus = { instance: o.name, reachable: false, current: null, running: null, healthy: false, lock: null };
      const [version, healthy] = await Promise.all([o.readVersion(), o.isHealthy()]);
      row.healthy = healthy;
      if (version) row.running = { release: version.release ?? null, digest: version.digest ?? null, pid: version.pid ?? null };
      await o.transport.connect();
      row.reachable = true;
      if (await o.currentRelease()) {
        const m = await o.readCurrentManifest().catch(() => null);
        row.current = m ? { release: m.release, digest: m.digest } : null;
      }
      const lock = await o.transport.exec(`cat ${o.layout.lock}/holder.json 2>/dev/null`);
      if (lock.code === 0 && lock.stdout.trim()) {
        try {
          const holder = JSON.parse(lock.stdout) as Record<string, unknown>;
          delete holder.token; // the owner token is a capability: never print it
          row.lock = holder;
        } catch {
          row.lock = { unreadable: true };
        }
      }
      return row;
    });
    return results.map((r, i) =>
      r.status === 'fulfilled'
        ? r.value
        : { instance: fleet.ops[i]!.name, reachable: false, current: null, running: null, healthy: false, lock: null, error: reasonOf(r) },
    );
  } finally {
    await fleet.close();
  }
}
