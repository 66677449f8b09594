/**
 * Picks the transport for an instance. Everything above this file works with `Transport` and
 * does not know whether the instance is reached over SSH or is a directory on this machine.
 */
import type { Instance, Inventory } from '../../config/inventory.ts';
import { LocalTransport } from './local.ts';
import { SshTransport } from './ssh.ts';
import type { TransportLogger } from './log.ts';
import type { Transport } from './types.ts';

export type { ExecOptions, ExecResult, Transport } from './types.ts';
export { succeeded } from './types.ts';
export { LocalTransport } from './local.ts';
export type { TransportLogger } from './log.ts';
export { SshTransport, type SshTransportOptions, type VerifiedHostKey } from './ssh.ts';

export interface CreateTransportOptions {
  /** SSH only: record the key of a host missing from known_hosts instead of refusing. Default false. */
  trustUnknown?: boolean;
  /** SSH only: bound on connect + key exchange + authentication, ms. Default: inventory ssh.connect_timeout_ms, else deploy.connect_timeout_ms. */
  connectTimeoutMs?: number;
  /** Where connections and commands are logged (pass the CLI's pino logger). Default: nowhere. */
  log?: TransportLogger;
}

/**
 * The transport for one instance: `LocalTransport` for `transport: local`, else an
 * `SshTransport` using the inventory's identity file and known_hosts. Nothing is opened yet
 * (call `connect()`, or let the first operation connect).
 */
export function createTransport(instance: Instance, inventory: Inventory, options: CreateTransportOptions = {}): Transport {
  if (instance.transport === 'local') return new LocalTransport(instance.name, { log: options.log });
  return new SshTransport({
    instance: instance.name,
    host: instance.host,
    port: instance.sshPort,
    user: instance.user,
    identityFile: inventory.ssh.identityFile,
    knownHostsFile: inventory.ssh.knownHosts,
    trustUnknown: options.trustUnknown ?? false,
    connectTimeoutMs: options.connectTimeoutMs ?? inventory.ssh.connectTimeoutMs,
    keepaliveIntervalMs: inventory.ssh.keepaliveIntervalMs,
    keepaliveCountMax: inventory.ssh.keepaliveCountMax,
    upload: { noProgressMs: inventory.deploy.upload_no_progress_ms, timeoutMs: inventory.deploy.upload_timeout_ms },
    log: options.log,
  });
}
