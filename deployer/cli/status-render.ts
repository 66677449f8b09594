/**
 * The text of `lockstep status`: one row per instance with each source for what it is (ssh,
 * app over HTTP, proxy), and the rollout the deployer announced to the proxy, if any.
 */
import type { Inventory } from '../../config/inventory.ts';
import type { RolloutInProgress } from '../../verdict/fleet-verdict.ts';
import { proxyClientFromInventory } from '../balancer/admin-client.ts';
import { renderProxyView, type InstanceStatus } from '../fleet/status.ts';
import { renderTable } from './table.ts';

/**
 * The status table: instance, ssh (reachable / UNREACHABLE: why), current on disk, app (what
 * /version answered, or `not answering`), health, proxy view, lock holder.
 */
export function renderStatusTable(rows: InstanceStatus[]): string {
  return renderTable(
    ['instance', 'ssh', 'current (disk)', 'app (/version)', 'health', 'proxy', 'lock'],
    rows.map((r) => [
      r.instance,
      r.reachable ? 'reachable' : `UNREACHABLE${r.error ? `: ${r.error}` : ''}`,
      r.current ? r.current.release : r.reachable ? '-' : 'unknown (no ssh)',
      r.running
        ? `${r.running.release ?? '?'} ${r.running.digest ? r.running.digest.slice(0, 12) : '?'}${r.current && r.running.digest !== r.current.digest ? ' (DIFFERS from disk)' : ''}`
        : 'not answering',
      r.healthy ? 'ok' : 'DOWN',
      renderProxyView(r.proxy),
      r.lock ? `held by ${String(r.lock.user)}@${String(r.lock.machine)} since ${String(r.lock.time)}` : r.reachable ? '-' : 'unknown (no ssh)',
    ]),
  );
}

/**
 * The rollout the deployer announced to the inventory's proxy (GET /admin/rollout), or null when
 * there is none, no proxy, or the proxy does not answer within 2 s (status still judges by the locks).
 */
export async function announcedRollout(inventory: Inventory): Promise<RolloutInProgress | null> {
  if (!inventory.proxy) return null;
  try {
    return await proxyClientFromInventory(inventory, process.env, { timeoutMs: 2000 }).rollout();
  } catch {
    return null;
  }
}
