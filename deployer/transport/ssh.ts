/**
 * The SSH transport: one verified, authenticated connection per instance (node-ssh over
 * ssh2), reused for every command and file of a run.
 *
 * Host keys are checked in ssh2's `hostVerifier`, which runs during key exchange, before any
 * authentication: a host whose key changed never sees our user name or a signature by our key.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import pLimit from 'p-limit';
import type { Client, ClientChannel, HostVerifier, SFTPWrapper, ServerHostKeyAlgorithm } from 'ssh2';
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
import { commandSummary, silentLogger, type TransportLogger } from './log.ts';
import { buildScript, shq, withWatchdog } from './shell.ts';
import type { ExecOptions, ExecResult, Transport } from './types.ts';

/** After a timeout's SIGTERM, how long the remote watchdog waits before SIGKILL. */
const KILL_GRACE_MS = 5_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** A silent peer (crashed host, network partition) is declared lost after about interval x (count + 1). */
const DEFAULT_KEEPALIVE_INTERVAL_MS = 5_000;
const KEEPALIVE_COUNT_MAX = 3;
/** How long close() waits for the server to acknowledge before dropping the socket. */
const CLOSE_GRACE_MS = 2_000;
/**
 * Commands running at once on one connection. sshd allows MaxSessions (default 10, sshd_config(5))
 * sessions per connection, SFTP takes one; beyond that channel opens are refused, so callers
 * that start more than this in parallel wait in line instead of failing.
 */
const MAX_CONCURRENT_COMMANDS = 8;
/** Bounded retries (50 ms, 100 ms, ... apart) of a channel open sshd refused. */
const CHANNEL_OPEN_RETRIES = 5;

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
   * SSH keepalive interval, ms. After 3 unanswered keepalives the connection counts as lost and
   * running operations fail with UnreachableInstanceError. Default 5 000.
   */
  keepaliveIntervalMs?: number;
}

/** How the host key of the current connection was accepted. */
export interface VerifiedHostKey {
  fingerprint: string;
  /** `known`: found in known_hosts. `added`: unknown, recorded because trustUnknown was set. */
  status: 'known' | 'added';
}

/** Turn an SFTP status error into a Node-style error code so callers branch as with fs. */
function sftpError(op: string, path: string, err: Error & { code?: unknown }): Error {
  // SFTP status codes (draft-ietf-secsh-filexfer-02 section 7): 2 no such file, 3 permission denied.
  const code = err.code === 2 ? 'ENOENT' : err.code === 3 ? 'EACCES' : 'EIO';
  return Object.assign(new Error(`${op} ${path}: ${err.message}`), { code });
}

/** The server refused the SFTP subsystem (not a connection problem). */
class SftpUnavailable extends Error {}

/** A failed file command (`cat`, `mv`), with the same error codes as sftpError. */
function commandFileError(op: string, path: string, stderr: string): Error {
  const code = /No such file/i.test(stderr) ? 'ENOENT' : /Permission denied/i.test(stderr) ? 'EACCES' : 'EIO';
  return Object.assign(new Error(`${op} ${path}: ${stderr.trim().split('\n').pop() ?? 'failed'}`), { code });
}

/** Runs commands and moves files over one SSH connection to one instance. */
export class SshTransport implements Transport {
  readonly instance: string;
  /** Set once a connection's host key was accepted. */
  verifiedHostKey: VerifiedHostKey | undefined;

  private readonly options: SshTransportOptions;
  private readonly log: TransportLogger;
  private ssh: NodeSSH | undefined;
  private connecting: Promise<void> | undefined;
  private sftp: Promise<SFTPWrapper> | undefined;
  /** Abort callbacks of operations in flight, called when the connection drops. */
  private readonly inFlight = new Set<(err: Error) => void>();
  private closing = false;
  private readonly commandSlots = pLimit(MAX_CONCURRENT_COMMANDS);

  constructor(options: SshTransportOptions) {
    this.options = options;
    this.instance = options.instance;
    this.log = options.log ?? silentLogger;
  }

  private get where(): string {
    return `${this.options.user}@${this.options.host}:${this.options.port}`;
  }

  /**
   * Open and authenticate the connection, or do nothing when it is open. A connection that
   * dropped is opened again (its host key is checked again).
   * @throws HostKeyMismatchError when the host presents a key other than the recorded one(s);
   *   UnknownHostKeyError when the host is not in known_hosts and trustUnknown is off;
   *   ConfigError when the identity file cannot be read or used (encrypted, malformed) or the
   *   known_hosts file cannot be read (a missing one is empty);
   *   UnreachableInstanceError for refused/timed-out connections and failed authentication.
   */
  connect(): Promise<void> {
    if (this.ssh?.isConnected()) return Promise.resolve();
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<void> {
    const { host, port, user, identityFile, knownHostsFile } = this.options;
    const timeout = this.options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.closing = false;
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
      } else if (!this.options.trustUnknown) {
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
    const logFields = { instance: this.instance, host, port, user };
    try {
      await ssh.connect({
        host,
        port,
        username: user,
        privateKey,
        hostVerifier,
        readyTimeout: timeout,
        keepaliveInterval: this.options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
        keepaliveCountMax: KEEPALIVE_COUNT_MAX,
        algorithms: { serverHostKey: preferredHostKeyAlgorithms(recordedTypes) as ServerHostKeyAlgorithm[] },
      });
    } catch (e) {
      ssh.dispose();
      if (refusal) {
        this.log.warn({ ...logFields, code: (refusal as { code?: string }).code }, 'ssh host key refused');
        throw refusal;
      }
      this.log.warn({ ...logFields, error: (e as Error).message }, 'ssh connect failed');
      const msg = (e as Error).message ?? '';
      // ssh2 parses the key before dialling: an encrypted or malformed key is the operator's
      // configuration, not the host's fault. Its messages never contain key material.
      if (/private ?key|passphrase/i.test(msg) && (e as { level?: unknown }).level === undefined) {
        throw new ConfigError(`the SSH identity file ${identityFile} cannot be used: ${msg}`, { field: 'ssh.identity_file' });
      }
      throw new UnreachableInstanceError(this.instance, this.describeConnectError(e as Error, timeout));
    }
    const conn = ssh.connection!;
    let lastError: Error | undefined;
    // node-ssh drops its own 'error' listener once connected; without ours a later socket
    // error would be an unhandled 'error' event and end the whole process.
    conn.on('error', (err: Error) => {
      lastError = err;
    });
    conn.on('close', () => {
      if (this.ssh === ssh) {
        this.ssh = undefined;
        this.sftp = undefined;
      }
      if (this.closing) return;
      const reason = `connection to ${this.where} lost${lastError ? ` (${lastError.message})` : ''}`;
      this.log.warn({ ...logFields, error: lastError?.message }, 'ssh connection lost');
      for (const abort of [...this.inFlight]) abort(new UnreachableInstanceError(this.instance, reason));
    });
    this.ssh = ssh;
    this.verifiedHostKey = accepted;
    if (accepted?.status === 'added') {
      this.log.info({ ...logFields, fingerprint: accepted.fingerprint, knownHostsFile }, 'ssh host key recorded (trusted on first use)');
    }
    this.log.debug(
      { ...logFields, fingerprint: accepted?.fingerprint, hostKey: accepted?.status, ms: Date.now() - started },
      'ssh connected',
    );
  }

  private describeConnectError(err: Error & { code?: unknown; level?: unknown }, timeout: number): string {
    const msg = err.message ?? String(err);
    if (err.code === 'ECONNREFUSED') return `connection refused by ${this.options.host}:${this.options.port}`;
    if (err.code === 'ETIMEDOUT' || /timed out/i.test(msg)) return `no SSH answer from ${this.where} within ${timeout} ms`;
    if (err.level === 'client-authentication' || /authentication methods failed/i.test(msg)) {
      return `authentication failed for ${this.where} with key file ${this.options.identityFile}`;
    }
    return `cannot connect to ${this.where}: ${msg}`;
  }

  private async connection(): Promise<Client> {
    await this.connect();
    const conn = this.ssh?.connection;
    if (!conn) throw new UnreachableInstanceError(this.instance, `connection to ${this.where} lost`);
    return conn;
  }

  /**
   * Run a command as `bash -c` on the instance. env values are exported by the script itself
   * (quoted), so nothing depends on the server's AcceptEnv; the script is the SSH exec request,
   * so, as with `ssh host cmd`, root on the instance can see it in `ps`: no secrets in env.
   * stdin is /dev/null. At most 8 commands run at once per connection; more wait their turn.
   * @param options.timeoutMs after this many ms the command's process group gets SIGTERM from a
   *   watchdog in the remote script (see withWatchdog), SIGKILL 5 s later; the result then has
   *   `code: null` and the signal.
   * @returns exactly what sshd reported: `{code, signal: null}` or `{code: null, signal: 'SIGxxx'}`.
   * @throws UnreachableInstanceError when the connection cannot be opened or drops mid-command;
   *   host key errors from connect().
   */
  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const script = buildScript(command, options);
    return this.commandSlots(async () => {
      const started = Date.now();
      const r = await this.run(command, script, options);
      this.log.debug(
        { instance: this.instance, command: commandSummary(command), code: r.code, signal: r.signal, ms: Date.now() - started },
        'exec',
      );
      return r;
    });
  }

  /**
   * Run `script` with bash on one channel. `stdin`, when given, is streamed to the script;
   * otherwise the script reads /dev/null.
   */
  private async run(command: string, script: string, options: ExecOptions, stdin?: Readable): Promise<ExecResult> {
    const conn = await this.connection();
    // `exec` keeps the pid sshd started (a process-group leader) as bash, which the timeout
    // watchdog relies on; stdin is /dev/null so no command waits for input that never comes.
    const body = options.timeoutMs === undefined ? script : withWatchdog(script, options.timeoutMs);
    // --norc/--noprofile: our commands must not depend on (or wait for) the user's shell startup
    // files; Debian's bash would otherwise source ~/.bashrc again because SSH_CLIENT is set.
    const remote = `exec bash --norc --noprofile -c ${shq(body)}${stdin ? '' : ' </dev/null'}`;
    return new Promise<ExecResult>((resolve, reject) => {
      const timers: NodeJS.Timeout[] = [];
      let settled = false;
      const finish = (err: Error | undefined, result?: ExecResult) => {
        if (settled) return;
        settled = true;
        timers.forEach(clearTimeout);
        this.inFlight.delete(abort);
        if (err) reject(err);
        else resolve(result!);
      };
      const abort = (err: Error) => finish(err);
      this.inFlight.add(abort);
      const start = (attempt: number) => {
        try {
          openChannel(attempt);
        } catch (e) {
          // ssh2 throws (instead of calling back) when the socket is already gone.
          finish(new UnreachableInstanceError(this.instance, `connection to ${this.where} lost (${(e as Error).message})`));
        }
      };
      const openChannel = (attempt: number) => conn.exec(remote, (err: Error | undefined, channel: ClientChannel) => {
        if (settled) {
          channel?.close();
          return;
        }
        if (err) {
          // A refused channel open on a live connection is sshd's per-connection session limit
          // (sessions that just ended can still count for a moment): wait and ask again.
          if (/Channel open failure/.test(err.message) && attempt < CHANNEL_OPEN_RETRIES && this.ssh?.connection === conn) {
            timers.push(setTimeout(() => start(attempt + 1), 50 * 2 ** attempt));
            return;
          }
          finish(new UnreachableInstanceError(this.instance, `cannot start a command on ${this.where}: ${err.message}`));
          return;
        }
        const stdout: Buffer[] = [];
        const stderr: Buffer[] = [];
        let code: number | null | undefined;
        let signal: string | null = null;
        channel.on('data', (c: Buffer) => stdout.push(c));
        channel.stderr.on('data', (c: Buffer) => stderr.push(c));
        channel.on('exit', (c: number | null, s?: string) => {
          code = c ?? null;
          signal = s ?? null;
        });
        channel.on('close', () => {
          if (code === undefined) {
            finish(new UnreachableInstanceError(this.instance, `connection to ${this.where} lost while running \`${command.split('\n')[0]}\``));
            return;
          }
          finish(undefined, {
            code,
            signal,
            stdout: Buffer.concat(stdout).toString('utf8'),
            stderr: Buffer.concat(stderr).toString('utf8'),
          });
        });
        if (stdin) {
          stdin.once('error', (e: Error) => {
            finish(e);
            channel.close();
          });
          stdin.pipe(channel);
        } else channel.end();
        if (options.timeoutMs !== undefined) {
          // The watchdog in the script stops the command; this only guards against a server
          // where it could not run (e.g. no bash), so a caller is never left waiting forever.
          timers.push(
            setTimeout(() => {
              finish(undefined, {
                code: null,
                signal: 'SIGKILL',
                stdout: Buffer.concat(stdout).toString('utf8'),
                stderr:
                  Buffer.concat(stderr).toString('utf8') +
                  `\nlockstep: timed out after ${options.timeoutMs} ms and ${this.where} did not stop the command\n`,
              });
              channel.close();
            }, options.timeoutMs + 2 * KILL_GRACE_MS + 1_000),
          );
        }
      });
      start(0);
    });
  }

  private async sftpSession(): Promise<SFTPWrapper> {
    const conn = await this.connection();
    this.sftp ??= new Promise<SFTPWrapper>((resolve, reject) => {
      const start = (attempt: number) => {
        try {
          openSftp(attempt);
        } catch (e) {
          reject(new UnreachableInstanceError(this.instance, `connection to ${this.where} lost (${(e as Error).message})`));
        }
      };
      const openSftp = (attempt: number) =>
        conn.sftp((err, sftp) => {
          if (!err) return resolve(sftp);
          if (/Unable to start subsystem/.test(err.message)) return reject(new SftpUnavailable(err.message));
          // Same transient session-limit refusal as for commands (see run()).
          if (/Channel open failure/.test(err.message) && attempt < CHANNEL_OPEN_RETRIES && this.ssh?.connection === conn) {
            setTimeout(() => start(attempt + 1), 50 * 2 ** attempt);
            return;
          }
          reject(new UnreachableInstanceError(this.instance, `cannot open SFTP on ${this.where}: ${err.message}`));
        });
      start(0);
    });
    this.sftp.catch(() => {
      this.sftp = undefined;
    });
    return this.sftp;
  }

  /** Run one SFTP operation; a connection drop while it runs becomes UnreachableInstanceError. */
  private withSftp<T>(op: (sftp: SFTPWrapper, done: (err: Error | undefined | null, value?: T) => void) => void): Promise<T> {
    return this.sftpSession().then(
      (sftp) =>
        new Promise<T>((resolve, reject) => {
          const abort = (err: Error) => {
            this.inFlight.delete(abort);
            reject(err);
          };
          this.inFlight.add(abort);
          op(sftp, (err, value) => {
            this.inFlight.delete(abort);
            if (err) reject(err);
            else resolve(value as T);
          });
        }),
    );
  }

  /** True once the server refused the SFTP subsystem: files then go through exec + stdin. */
  private sftpUnavailable = false;

  /** Use SFTP unless the server does not offer it (some hardened servers disable the subsystem). */
  private async useSftp(): Promise<boolean> {
    if (this.sftpUnavailable) return false;
    try {
      await this.sftpSession();
      return true;
    } catch (e) {
      if (!(e instanceof SftpUnavailable)) throw e;
      this.sftpUnavailable = true;
      this.log.warn({ instance: this.instance, error: e.message }, 'ssh: no SFTP on this host, files go through exec');
      return false;
    }
  }

  /**
   * Copy a local file to `remotePath`: to a temp name in the same directory, then an atomic
   * rename over the target, so readers never see a partial file. The file keeps the local
   * file's permission bits. Over SFTP (rename: OpenSSH's posix-rename extension); when the
   * server has no SFTP subsystem, by streaming the file to `cat` on one command channel.
   * @throws Error with code ENOENT/EACCES/EIO (e.g. ENOENT for a missing parent directory);
   *   UnreachableInstanceError when the connection drops.
   */
  async putFile(localPath: string, remotePath: string): Promise<void> {
    const mode = (await stat(localPath)).mode & 0o7777;
    const tmp = `${dirname(remotePath)}/.${basename(remotePath)}.tmp-${randomBytes(6).toString('hex')}`;
    if (!(await this.useSftp())) {
      const q = shq;
      const script =
        `cat > ${q(tmp)} && chmod ${mode.toString(8)} ${q(tmp)} && mv -f ${q(tmp)} ${q(remotePath)}` +
        ` || { rc=$?; rm -f ${q(tmp)}; exit $rc; }`;
      const r = await this.commandSlots(() => this.run(`put ${remotePath}`, script, {}, createReadStream(localPath)));
      if (r.code !== 0 || r.signal !== null) throw commandFileError('upload to', remotePath, r.stderr);
      return;
    }
    try {
      await this.withSftp<void>((sftp, done) =>
        sftp.fastPut(localPath, tmp, { mode }, (err) => done(err && sftpError('upload to', tmp, err))),
      );
      await this.withSftp<void>((sftp, done) =>
        sftp.ext_openssh_rename(tmp, remotePath, (err) => done(err && sftpError('rename to', remotePath, err))),
      );
    } catch (e) {
      if (!(e instanceof UnreachableInstanceError)) {
        await this.withSftp<void>((sftp, done) => sftp.unlink(tmp, () => done(undefined))).catch(() => undefined);
      }
      throw e;
    }
  }

  /**
   * Read a UTF-8 file (over SFTP, or `cat` when the server has no SFTP).
   * @throws Error with code ENOENT when missing (EACCES, EIO otherwise); UnreachableInstanceError.
   */
  async readFile(remotePath: string): Promise<string> {
    if (!(await this.useSftp())) {
      const r = await this.commandSlots(() => this.run(`read ${remotePath}`, `cat -- ${shq(remotePath)}`, {}));
      if (r.code !== 0 || r.signal !== null) throw commandFileError('read', remotePath, r.stderr);
      return r.stdout;
    }
    const buf = await this.withSftp<Buffer>((sftp, done) =>
      sftp.readFile(remotePath, (err: Error | undefined, data: Buffer) => done(err && sftpError('read', remotePath, err), data)),
    );
    return buf.toString('utf8');
  }

  /** Close the connection (idempotent). Operations still running fail as unreachable. */
  async close(): Promise<void> {
    // A connect in progress would otherwise finish after close() and leave a connection open.
    if (this.connecting) await this.connecting.catch(() => undefined);
    const ssh = this.ssh;
    this.ssh = undefined;
    this.sftp = undefined;
    if (!ssh) return;
    this.closing = true;
    for (const abort of [...this.inFlight]) abort(new UnreachableInstanceError(this.instance, 'connection closed by lockstep'));
    const conn = ssh.connection;
    await new Promise<void>((resolve) => {
      if (!conn) return resolve();
      conn.once('close', () => resolve());
      conn.end();
      // end() waits for the server's goodbye; a frozen or partitioned host never sends it.
      // ssh2's destroy() is a no-op once end() was called (the socket is no longer writable),
      // so the socket itself is destroyed (`_sock`: ssh2 1.x keeps it there).
      setTimeout(() => (conn as unknown as { _sock?: { destroy(): void } })._sock?.destroy(), CLOSE_GRACE_MS).unref();
    });
  }
}
