/**
 * The SSH transport: one verified, authenticated connection per instance (node-ssh over
 * ssh2), reused for every command and file of a run. This file owns the open connection: when
 * it is (re)opened, what happens when it drops, the command channels (at most 8 at once, bounded
 * retries of refused channel opens, the timeout watchdog), the SFTP session, and close().
 * Opening a connection and checking its host key (before any authentication) is ssh-connect.ts;
 * moving files over SFTP or a command channel is ssh-files.ts.
 */
import type { Readable } from 'node:stream';
import type { NodeSSH } from 'node-ssh';
import pLimit from 'p-limit';
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import { UnreachableInstanceError } from '../../config/errors.ts';
import { commandSummary, silentLogger, type TransportLogger } from './log.ts';
import { buildScript, shq, withWatchdog } from './shell.ts';
import { openSshConnection, sshWhere, type SshTransportOptions, type VerifiedHostKey } from './ssh-connect.ts';
import { putRemoteFile, readRemoteFile, SftpUnavailable, type SftpOp, type SshFileChannel } from './ssh-files.ts';
import type { ExecOptions, ExecResult, Transport } from './types.ts';

export type { SshTransportOptions, VerifiedHostKey } from './ssh-connect.ts';

/** After a timeout's SIGTERM, how long the remote watchdog waits before SIGKILL. */
const KILL_GRACE_MS = 5_000;
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
  /** What ssh-files.ts works over: the SFTP session, or a command channel when there is none. */
  private readonly files: SshFileChannel = {
    useSftp: () => this.useSftp(),
    withSftp: <T>(op: SftpOp<T>) => this.withSftp(op),
    runScript: (command, script, stdin) => this.commandSlots(() => this.run(command, script, {}, stdin?.())),
  };

  constructor(options: SshTransportOptions) {
    this.options = options;
    this.instance = options.instance;
    this.log = options.log ?? silentLogger;
  }

  private get where(): string {
    return sshWhere(this.options);
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
    this.closing = false;
    const { ssh, hostKey } = await openSshConnection(this.options, this.log);
    const { host, port, user } = this.options;
    const logFields = { instance: this.instance, host, port, user };
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
    this.verifiedHostKey = hostKey;
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
  private withSftp<T>(op: SftpOp<T>): Promise<T> {
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
  putFile(localPath: string, remotePath: string): Promise<void> {
    return putRemoteFile(this.files, localPath, remotePath);
  }

  /**
   * Read a UTF-8 file (over SFTP, or `cat` when the server has no SFTP).
   * @throws Error with code ENOENT when missing (EACCES, EIO otherwise); UnreachableInstanceError.
   */
  readFile(remotePath: string): Promise<string> {
    return readRemoteFile(this.files, remotePath);
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
