/**
 * The balancer engines `lockstep proxy` can run, behind one small interface. Both serve the same
 * admin API (admin.ts over an AdminControl, control.ts), which is all the deployer ever talks to:
 *   - `lockstep`: Lockstep's own Node proxy (index.ts, startProxy);
 *   - `haproxy`: a supervised HAProxy driven through its Runtime API (haproxy/supervisor.ts).
 * Chosen by the inventory's `proxy.engine` (README, "Choosing an engine").
 */
import type { Logger } from 'pino';
import { loadInventory, type Inventory } from '../config/inventory.ts';
import { proxySection } from '../config/proxy-section.ts';
import { startHaproxyEngine } from './haproxy/supervisor.ts';
import { startProxy, type RunningProxy } from './index.ts';
import { proxyConfigFromInventory, upstreamsFromInventory } from './inventory-config.ts';

export type EngineName = 'lockstep' | 'haproxy';

/** A started engine, as the `lockstep proxy` command drives it. */
export interface RunningEngine {
  readonly engine: EngineName;
  /** Where users connect. */
  readonly url: string;
  /** Base URL of the admin API. */
  readonly adminUrl: string;
  /** The Lockstep engine's handle (engine `lockstep` only). */
  readonly proxy?: RunningProxy;
  /** Re-read the inventory file's instances (SIGHUP). @throws for an invalid inventory; nothing changes then. */
  reloadFromInventory(): Promise<{ added: string[]; removed: string[] }>;
  /** Resolves (with why) when the engine stopped on its own (HAProxy exited); absent for lockstep. */
  readonly died?: Promise<string>;
  /** One line per instance for the start message. */
  describe(): Promise<string[]>;
  /** Graceful stop. Idempotent. */
  close(): Promise<void>;
}

/** The engine an inventory asks for (`undici` / `http-proxy-3` are older spellings of `lockstep`). */
export function engineOf(inventory: Inventory): EngineName {
  return proxySection(inventory).engine === 'haproxy' ? 'haproxy' : 'lockstep';
}

/**
 * Start the inventory's engine.
 * @param options.workers engine lockstep: worker processes (see index.ts); ignored by haproxy.
 * @throws what the engine's start throws (ProxyConfigError, listen errors, ConfigError).
 */
export async function startEngine(inventory: Inventory, options: { env: NodeJS.ProcessEnv; logger: Logger; workers: number }): Promise<RunningEngine> {
  const line = (name: string, url: string, healthy: boolean, state = 'enabled') =>
    `  ${name.padEnd(16)} ${url.padEnd(28)} ${healthy ? 'healthy' : 'NOT healthy (waiting for checks)'}${state === 'enabled' ? '' : ` (${state})`}`;
  if (engineOf(inventory) === 'haproxy') {
    const h = await startHaproxyEngine(inventory, { env: options.env, logger: options.logger });
    return {
      engine: 'haproxy',
      url: h.url,
      adminUrl: h.adminUrl,
      died: h.died,
      reloadFromInventory: () => h.reload(),
      describe: async () => (await h.control.instances()).map((i) => line(i.name, i.url, i.healthy, i.state)),
      close: () => h.close(),
    };
  }
  const config = proxyConfigFromInventory(inventory, options.env, options.logger);
  const reloadSource = () => upstreamsFromInventory(loadInventory(inventory.file));
  const proxy = await startProxy(config, { reloadSource, workers: options.workers });
  return {
    engine: 'lockstep',
    url: proxy.url,
    adminUrl: proxy.adminUrl,
    proxy,
    reloadFromInventory: () => proxy.reload(reloadSource()),
    describe: async () => proxy.instances().map((i) => line(i.name, i.url, i.healthy)),
    close: () => proxy.close(),
  };
}
