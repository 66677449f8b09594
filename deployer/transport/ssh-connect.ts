/**
 * Opening one SSH connection (node-ssh over ssh2): the options of an SSH transport, reading the
 * identity file and known_hosts, the host-key check in ssh2's `hostVerifier`, which runs during
 * key exchange, before any authentication (a host whose key changed never sees our user name or
 * a signature by our key), recording an unknown key when trust-on-first-use is asked for,
 * keepalive, and turning connect failures into lockstep's errors (ConfigError for the operator's
 * files, UnreachableInstanceError for the host). SshTransport (ssh.ts) owns the connection after.
 */
import { readFile } from 'node:fs/promises';
import { NodeSSH } from 'node-ssh';
import type { HostVerifier, ServerHostKeyAlgorithm } from 'ssh2';
import { ConfigError, HostKeyMismatchError, UnknownHostKeyError, UnreachableInstanceError } from '../../config/errors.ts';
import {
  appendKnownHost,
  checkHostKey,
  findHostKeys,
  knownHostsName,
  loadKnownHosts,
  preferredHostKeyAlgorithms,
  type KnownHosts,
} from './known-hosts.ts';
import type { TransportLogger } from './log.ts';

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/**
 * A silent peer (crashed or frozen host, network partition) is declared lost after about
 * interval x (count + 1) without a packet from it (ssh2 sends a keepalive each interval and gives
 * up when more than `count` go unanswered): 2.5 s x 4 = 10 s by default (inventory
 * ssh.keepalive_interval_ms, ssh.keepalive_count_max).
 */
const DEFAULT_KEEPALIVE_INTERVAL_MS = 2_500;
const DEFAULT_KEEPALIVE_COUNT_MAX = 3;

export interface SshTransportOptions {
  /** Instance name, for messages. */
  instance: string;
  host: string;
  /** TCP port of sshd. */
  port: number;
  /** Login user. */
  user: string;
  /** Private key file used to authenticate. Its content is never logged. */
  identityFile: string;
  /** OpenSSH-format known_hosts file checked before authenticating. */
  knownHostsFile: string;
  /** Record the key of a host that is not in known_hosts instead of refusing it. Default false. */
  trustUnknown?: boolean;
  /** Bound on TCP connect + key exchange + authentication, in ms. Default 10 000. */
  connectTimeoutMs?: number;
  /** Where connection events and commands are logged (a pino logger fits). Default: nowhere. */
  log?: TransportLogger;
  /**
   * SSH keepalive interval, ms. After `keepaliveCountMax` unanswered keepalives in a row the
   * connection counts as lost and running operations fail with UnreachableInstanceError.
   * Default 2 500.
   */
  keepaliveIntervalMs?: number;
  /** Unanswered keepalives in a row before the connection counts as lost. Default 3. */
  keepaliveCountMax?: number;
  /** Upload bounds (putFile), ms: no byte acknowledged for `noProgressMs`, or longer than `timeoutMs` in all. */
  upload?: { noProgressMs: number; timeoutMs: number };
}

/** How the host key of the current connection was accepted. */
export interface VerifiedHostKey {
  fingerprint: string;
  /** `known`: found in known_hosts. `added`: unknown, recorded because trustUnknown was set. */
  status: 'known' | 'added';
}

/** `user@host:port`, for messages. */
export function sshWhere(o: Pick<SshTransportOptions, 'user' | 'host' | 'port'>): string {
  return `${o.user}@${o.host}:${o.port}`;
}

/**
 * Open and authenticate one connection, checking the host key before authenticating.
 * @returns the connected node-ssh client and how its host key was accepted.
 * @throws HostKeyMismatchError when the host presents a key other than the recorded one(s);
 *   UnknownHostKeyError when the host is not in known_hosts and trustUnknown is off;
 *   ConfigError when the identity file cannot be read or used (encrypted, malformed) or the
 *   known_hosts file cannot be read (a missing one is empty);
 *   UnreachableInstanceError for refused/timed-out connections and failed authentication.
 */
export async function openSshConnection(
  options: SshTransportOptions,
  log: TransportLogger,
): Promise<{ ssh: NodeSSH; hostKey: VerifiedHostKey | undefined }> {
  const { host, port, user, identityFile, knownHostsFile } = options;
  const timeout = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  let privateKey: string;
  try {
    privateKey = await readFile(identityFile, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `cannot read the SSH identity file ${identityFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}); ` +
        'set ssh.identity_file in the inventory',
      { field: 'ssh.identity_file' },
    );
  }
  let known: KnownHosts;
  try {
    known = await loadKnownHosts(knownHostsFile);
  } catch (e) {
    throw new ConfigError(
      `cannot read the known_hosts file ${knownHostsFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}); set ssh.known_hosts in the inventory`,
      { field: 'ssh.known_hosts' },
    );
  }
  const recordedTypes = findHostKeys(known, host, port).map((e) => e.keyType);

  let refusal: Error | undefined;
  let accepted: VerifiedHostKey | undefined;
  const hostVerifier: HostVerifier = (key, verify) => {
    const check = checkHostKey(known, host, port, key);
    if (check.status === 'known') {
      accepted = { fingerprint: check.fingerprint, status: 'known' };
      verify(true);
    } else if (check.status === 'changed') {
      refusal = new HostKeyMismatchError(knownHostsName(host, port), check.expected, check.fingerprint, knownHostsFile);
      verify(false);
    } else if (!options.trustUnknown) {
      refusal = new UnknownHostKeyError(knownHostsName(host, port), check.fingerprint, knownHostsFile);
      verify(false);
    } else {
      appendKnownHost(knownHostsFile, host, port, key).then(
        () => {
          accepted = { fingerprint: check.fingerprint, status: 'added' };
          verify(true);
        },
        (err: Error) => {
          refusal = new UnknownHostKeyError(knownHostsName(host, port), check.fingerprint, knownHostsFile);
          refusal.message += ` (could not record it: ${err.message})`;
          verify(false);
        },
      );
    }
  };

  const ssh = new NodeSSH();
  const started = Date.now();
  const logFields = { instance: options.instance, host, port, user };
  try {
    await ssh.connect({
      host,
      port,
      username: user,
      privateKey,
      hostVerifier,
      readyTimeout: timeout,
      keepaliveInterval: options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: options.keepaliveCountMax ?? DEFAULT_KEEPALIVE_COUNT_MAX,
      algorithms: { serverHostKey: preferredHostKeyAlgorithms(recordedTypes) as ServerHostKeyAlgorithm[] },
    });
  } catch (e) {
    ssh.dispose();
    if (refusal) {
      log.warn({ ...logFields, code: (refusal as { code?: string }).code }, 'ssh host key refused');
      throw refusal;
    }
    log.warn({ ...logFields, error: (e as Error).message }, 'ssh connect failed');
    const msg = (e as Error).message ?? '';
    // ssh2 parses the key before dialling: an encrypted or malformed key is the operator's
    // configuration, not the host's fault. Its messages never contain key material.
    if (/private ?key|passphrase/i.test(msg) && (e as { level?: unknown }).level === undefined) {
      throw new ConfigError(`the SSH identity file ${identityFile} cannot be used: ${msg}`, { field: 'ssh.identity_file' });
    }
    throw new UnreachableInstanceError(options.instance, describeConnectError(options, e as Error, timeout));
  }
  if (accepted?.status === 'added') {
    log.info({ ...logFields, fingerprint: accepted.fingerprint, knownHostsFile }, 'ssh host key recorded (trusted on first use)');
  }
  log.debug(
    { ...logFields, fingerprint: accepted?.fingerprint, hostKey: accepted?.status, ms: Date.now() - started },
    'ssh connected',
  );
  return { ssh, hostKey: accepted };
}

/** Why a connection could not be opened, in words (refused, timed out, authentication, other). */
function describeConnectError(options: SshTransportOptions, err: Error & { code?: unknown; level?: unknown }, timeout: number): string {
  const msg = err.message ?? String(err);
  if (err.code === 'ECONNREFUSED') return `connection refused by ${options.host}:${options.port}`;
  if (err.code === 'ETIMEDOUT' || /timed out/i.test(msg)) return `no SSH answer from ${sshWhere(options)} within ${timeout} ms`;
  if (err.level === 'client-authentication' || /authentication methods failed/i.test(msg)) {
    return `authentication failed for ${sshWhere(options)} with key file ${options.identityFile}`;
  }
  return `cannot connect to ${sshWhere(options)}: ${msg}`;
}
