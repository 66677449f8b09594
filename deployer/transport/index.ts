// TEMP (lead): replaced by the transport branch.
import type { Instance, Inventory } from '../inventory.ts';
import { LocalTransport } from './local.ts';
import type { Transport } from './types.ts';
export function createTransport(instance: Instance, _inventory: Inventory, _options: { trustUnknown?: boolean; connectTimeoutMs?: number } = {}): Transport {
  return new LocalTransport(instance.name);
}
