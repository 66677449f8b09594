/**
 * The rollout's view of the proxy: drain and enable through the admin API client.
 */
import type { Inventory } from '../../config/inventory.ts';
import { proxyClientFromInventory } from './admin-client.ts';
import type { ProxyControl } from '../rollout/rollout.ts';
import { GateFailedError } from '../../config/errors.ts';

/**
 * A ProxyControl for the inventory's proxy, or undefined when the inventory has no proxy or it
 * is not running (then the rollout activates without draining, and says so on `progress`: with
 * no proxy there is no traffic to drain).
 * @throws ProxyAdminError when the proxy answers but refuses the token (a misconfiguration that
 *   must not be papered over).
 */
export async function proxyControlFor(
  inventory: Inventory,
  progress: (instance: string, line: string) => void,
): Promise<ProxyControl | undefined> {
  if (!inventory.proxy) return undefined;
  const client = proxyClientFromInventory(inventory);
  let known: string[];
  try {
    known = (await client.listInstances()).map((i) => i.name);
  } catch (e) {
    if ((e as { status?: number }).status === 401) throw e;
    progress('proxy', `WARNING: ${(e as Error).message}; rolling out WITHOUT draining`);
    return undefined;
  }
  const unknown = inventory.instances.filter((i) => !known.includes(i.name)).map((i) => i.name);
  if (unknown.length) progress('proxy', `WARNING: the proxy does not know ${unknown.join(', ')} (reload it: lockstep proxy picks up the inventory on SIGHUP)`);
  return {
    async drain(name, timeoutMs) {
      if (!known.includes(name)) return { drained: true };
      const r = await client.drain(name, { waitMs: timeoutMs });
      return { drained: r.drained };
    },
    async enable(name, timeoutMs) {
      if (!known.includes(name)) return;
      await client.enable(name);
      // The next batch drains other instances: this one must carry traffic first, so wait
      // until the proxy's own health checks pass (rise) instead of trusting our gate alone.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const me = (await client.listInstances()).find((i) => i.name === name);
        if (me?.healthy && me.state === 'enabled') return;
        if (Date.now() > deadline) {
          throw new GateFailedError(name, `the proxy did not mark it healthy within ${timeoutMs} ms of enabling it (state ${me?.state ?? 'unknown'})`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
