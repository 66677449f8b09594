/**
 * The rollout's view of the proxy: drain and enable through the admin API client, adding an
 * instance the proxy does not know yet (admin reload) before its activation.
 */
import type { Inventory } from '../../config/inventory.ts';
import { ProxyAdminError, proxyClientFromInventory } from './admin-client.ts';
import type { ProxyControl } from '../rollout/rollout.ts';
import { GateFailedError } from '../../config/errors.ts';

export interface ProxyControlOptions {
  /**
   * `--no-proxy`: roll out without the proxy even though the inventory has one. Instances are
   * then restarted without draining (requests in flight on them fail).
   */
  noProxy?: boolean;
}

/**
 * A ProxyControl for the inventory's proxy, or undefined when the inventory has no proxy (or
 * `noProxy` was asked for, which `progress` reports).
 * Preflight rule (issue 12): an inventory with a proxy section means the rollout drains through
 * it, so a proxy that cannot be reached stops the operation before anything changes.
 * @throws ProxyAdminError (exit 3) naming the admin address when the proxy is unreachable or
 *   refuses the token; the message says how to start it or to pass `--no-proxy`.
 */
export async function proxyControlFor(
  inventory: Inventory,
  progress: (instance: string, line: string) => void,
  options: ProxyControlOptions = {},
): Promise<ProxyControl | undefined> {
  if (!inventory.proxy) return undefined;
  if (options.noProxy) {
    progress('proxy', '--no-proxy: rolling out WITHOUT the proxy: instances are restarted without draining, so requests in flight on them may fail');
    return undefined;
  }
  const client = proxyClientFromInventory(inventory);
  const known = new Set<string>();
  const refresh = async (): Promise<void> => {
    known.clear();
    for (const i of await client.listInstances()) known.add(i.name);
  };
  try {
    await refresh();
  } catch (e) {
    const status = (e as { status?: number }).status;
    throw new ProxyAdminError(
      client.adminUrl,
      `preflight: the inventory has a proxy (${inventory.file}: proxy.admin_url / proxy.admin_listen), and its admin API at ${client.adminUrl} cannot be used: ${(e as Error).message}; ` +
        'nothing was changed. Start it (`lockstep proxy`), or pass --no-proxy to restart instances without draining',
      status,
    );
  }
  const unknown = inventory.instances.filter((i) => !known.has(i.name)).map((i) => i.name);
  if (unknown.length) progress('proxy', `the proxy does not know ${unknown.join(', ')} yet: each is added (admin reload) before its activation`);
  return {
    async announce(rollout, ttlMs) {
      if (rollout) await client.announceRollout(rollout, ttlMs);
      else await client.clearRollout();
    },
    async ensureKnown(name) {
      if (known.has(name)) return true;
      try {
        const { added } = await client.reload();
        await refresh();
        progress('proxy', `reloaded its upstreams from the inventory (added: ${added.join(', ') || 'none'})`);
      } catch (e) {
        progress(name, `adding it to the proxy failed (${(e as Error).message})`);
      }
      return known.has(name);
    },
    async drain(name, timeoutMs) {
      if (!known.has(name)) return { drained: true };
      const r = await client.drain(name, { waitMs: timeoutMs });
      return { drained: r.drained };
    },
    async enable(name, timeoutMs) {
      if (!known.has(name)) return;
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
