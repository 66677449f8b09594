/**
 * `lockstep hosts trust`: record the SSH host keys of the fleet in known_hosts, the explicit
 * operator step that lets later connections verify hosts. A changed key is never replaced.
 */
import pLimit from 'p-limit';
import { ConfigError } from '../../config/errors.ts';
import type { Instance, Inventory } from '../../config/inventory.ts';
import {
  appendKnownHost,
  checkHostKey,
  fingerprint,
  findHostKeys,
  knownHostsName,
  loadKnownHosts,
  type KnownHosts,
} from './known-hosts.ts';
import { probeHostKey } from './host-key-probe.ts';

export interface TrustHostResult {
  instance: string;
  host: string;
  port: number;
  /** Fingerprint of the key the host presented (`SHA256:...`), null when it was unreachable. */
  fingerprint: string | null;
  /**
   * `added`: was unknown, now recorded. `already-known`: the recorded key matched.
   * `changed-refused`: the host presented a different key; known_hosts was left unchanged.
   * `unreachable`: no key could be fetched (see `reason`).
   */
  status: 'added' | 'already-known' | 'changed-refused' | 'unreachable';
  /** For changed-refused: the recorded fingerprints. */
  expected?: string[];
  /** For unreachable: why. */
  reason?: string;
}

/**
 * Fetch each SSH instance's host key (without authenticating, like ssh-keyscan) and record
 * unknown ones in the inventory's known_hosts. Local instances are skipped.
 * @param options.instances names to limit the run to (default: every ssh instance).
 * @param options.timeoutMs per-host bound, ms (default: inventory ssh.connect_timeout_ms, else deploy.connect_timeout_ms).
 * @returns one result per SSH instance, in inventory order.
 * @throws ConfigError for a name in `instances` that the inventory does not have, or an
 *   unreadable known_hosts file.
 */
export async function trustHosts(
  inventory: Inventory,
  options: { instances?: string[]; timeoutMs?: number } = {},
): Promise<TrustHostResult[]> {
  let selected: Instance[] = inventory.instances;
  if (options.instances) {
    const missing = options.instances.filter((n) => !inventory.instances.some((i) => i.name === n));
    if (missing.length > 0) {
      throw new ConfigError(`unknown instance(s) ${missing.join(', ')} (inventory ${inventory.file})`, { file: inventory.file });
    }
    selected = inventory.instances.filter((i) => options.instances!.includes(i.name));
  }
  const sshInstances = selected.filter((i) => i.transport === 'ssh');
  const file = inventory.ssh.knownHosts;
  const timeoutMs = options.timeoutMs ?? inventory.ssh.connectTimeoutMs;
  const limit = pLimit(inventory.deploy.concurrency);
  let known: KnownHosts;
  try {
    known = await loadKnownHosts(file);
  } catch (e) {
    throw new ConfigError(`cannot read the known_hosts file ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
      field: 'ssh.known_hosts',
    });
  }
  // Two instances on the same host:port share one known_hosts line: record it once.
  const recording = new Map<string, Promise<void>>();

  return Promise.all(
    sshInstances.map((inst) =>
      limit(async (): Promise<TrustHostResult> => {
        const base = { instance: inst.name, host: inst.host, port: inst.sshPort };
        let key: Buffer;
        try {
          const types = findHostKeys(known, inst.host, inst.sshPort).map((e) => e.keyType);
          key = await probeHostKey(inst.host, inst.sshPort, types, timeoutMs);
        } catch (e) {
          return { ...base, fingerprint: null, status: 'unreachable', reason: (e as Error).message };
        }
        const check = checkHostKey(known, inst.host, inst.sshPort, key);
        if (check.status === 'known') return { ...base, fingerprint: check.fingerprint, status: 'already-known' };
        if (check.status === 'changed') {
          return { ...base, fingerprint: check.fingerprint, status: 'changed-refused', expected: check.expected };
        }
        const name = knownHostsName(inst.host, inst.sshPort);
        let pending = recording.get(name);
        if (!pending) {
          pending = appendKnownHost(file, inst.host, inst.sshPort, key);
          recording.set(name, pending);
        }
        await pending;
        return { ...base, fingerprint: fingerprint(key), status: 'added' };
      }),
    ),
  );
}
