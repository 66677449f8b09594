/**
 * Opening the fleet: one transport (one connection) per instance, opened in parallel under the
 * inventory's concurrency bound, and closed together.
 */
import pLimit from 'p-limit';
import type { Instance, Inventory } from '../../config/inventory.ts';
import { InstanceOps } from './instance.ts';
import type { AuditContext } from './history.ts';
import { createTransport, type TransportLogger } from '../transport/index.ts';
import type { Transport } from '../transport/types.ts';

export type TransportFactory = (instance: Instance, inventory: Inventory) => Transport;

let transportLog: TransportLogger | undefined;

/** Log every fleet's connections and commands here from now on (the CLI's pino logger). */
export function setTransportLogger(log: TransportLogger | undefined): void {
  transportLog = log;
}

export interface Fleet {
  inventory: Inventory;
  ops: InstanceOps[];
  /** Run `fn` on every instance with the concurrency bound; settles all, never rejects. */
  each<T>(fn: (ops: InstanceOps) => Promise<T>, only?: InstanceOps[]): Promise<PromiseSettledResult<T>[]>;
  close(): Promise<void>;
}

/**
 * Build the fleet's instance operations (connections open lazily on first use / preflight).
 * @param instanceNames restrict to these instances (unknown names are a usage error upstream).
 * @param audit what the command says about itself in every history entry it writes (operation,
 *   the operator's `-m` message).
 */
export function openFleet(
  inventory: Inventory,
  options: { factory?: TransportFactory; instanceNames?: string[]; audit?: AuditContext } = {},
): Fleet {
  const factory = options.factory ?? ((i, inv) => createTransport(i, inv, { log: transportLog }));
  const selected = options.instanceNames
    ? inventory.instances.filter((i) => options.instanceNames!.includes(i.name))
    : inventory.instances;
  const ops = selected.map((i) => new InstanceOps(i, factory(i, inventory), inventory));
  for (const o of ops) o.audit = { ...options.audit };
  const limit = pLimit(inventory.deploy.concurrency);
  return {
    inventory,
    ops,
    each(fn, only) {
      return Promise.allSettled((only ?? ops).map((o) => limit(() => fn(o))));
    },
    async close() {
      await Promise.allSettled(ops.map((o) => o.transport.close()));
    },
  };
}

/** Error message of a rejected settle result. */
export function reasonOf(r: PromiseSettledResult<unknown>): string {
  if (r.status === 'fulfilled') return '';
  const e = r.reason as Error;
  return e?.message ?? String(e);
}
