/**
 * The SSH transport: one verified, authenticated connection per instance (node-ssh over
 * ssh2), reused for every command and file of a run. This file owns the open connection: when
 * it is (re)opened, what happens when it drops or goes silent (keepalive), the channels (commands
 * and one SFTP session per transfer, at most 8 at once and fewer when sshd's MaxSessions refuses:
 * ChannelGate; the timeout watchdog), and close().
 * Opening a connection and checking its host key (before any authentication) is ssh-connect.ts;
 * moving files over SFTP or a command channel is ssh-files.ts.
 */
import type { Readable } from 'node:stream';
import type { NodeSSH } from 'node-ssh';
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import { UnreachableInstanceError } from '../../config/errors.ts';
import { commandSummary, silentLogger, type TransportLogger } from './log.ts';
import { buildScript, shq, withWatchdog } from './shell.ts';
import { openSshConnection, sshWhere, type SshTransportOptions, type VerifiedHostKey } from './ssh-connect.ts';
import { ChannelGate } from './channel-gate.ts';
import { putRemoteFile, readRemoteFile, SftpUnavailable, type SshFileChannel } from './ssh-files.ts';
import type { ExecOptions, ExecResult, PutFileOptions, Transport } from './types.ts';

export type { SshTransportOptions, VerifiedHostKey } from './ssh-connect.ts';

/** After a timeout's SIGTERM, how long the remote watchdog waits before SIGKILL. */
const KILL_GRACE_MS = 5_000;
/** How long close() waits for the server to acknowledge before dropping the socket. */
const CLOSE_GRACE_MS = 2_000;
/**
 * Channels (commands and SFTP sessions) open at once on one connection, at most. sshd allows
 * MaxSessions (default 10, sshd_config(5)) per connection; a server set lower is learnt from its
 * first refusal (ChannelGate), so callers that start more in parallel wait in line instead of failing.
 */
const MAX_CHANNELS = 8;
/**
 * After a connection was lost to the keepalive, the next connect waits at least this long (and at
 * most the connect timeout; else twice the keepalive interval) for the host to answer again.
 */
const SUSPECT_CONNECT_MS = 2_000;
/** Removing a partial upload's temp file gives up after this long (the next deploy's prepare removes it). */
const LEFTOVER_RM_MS = 10_000;
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
  /** Abort callbacks of operations in flight, called when the connection drops. */
  private readonly inFlight = new Set<(err: Error) => void>();
  private closing = false;
  /** The channel gate of each connection (see ChannelGate). */
  private readonly gates = new WeakMap<Client, ChannelGate>();
  /**
   * Set when a connect timed out (the host accepts TCP but does not answer SSH: frozen, or not
   * sshd): later operations of this transport fail at once with this reason instead of each
   * waiting for a connect timeout of its own. A refused or closed connection is not this: it is
   * opened again.
   */
  private lost: string | undefined;
  /**
   * Set when the connection was lost to the keepalive (the host went silent): the next connect
   * gets a short second chance (SUSPECT_CONNECT_MS bound) instead of the full connect timeout.
   */
  private suspect = false;
  /** What ssh-files.ts works over: SFTP sessions, or command channels when there is no SFTP. */
  private readonly files: SshFileChannel = {
    useSftp: () => !this.sftpUnavailable,
    withSftp: <T>(fn: (sftp: SFTPWrapper) => Promise<T>) => this.withSftp(fn),
    noSftp: (e) => this.noSftp(e),
    runScript: (command, script, stdin) => this.run(command, script, {}, stdin?.()),
    removeLeftover: async (path) => {
      // Bounded as a whole: the command may first wait for a channel slot (a stalled SFTP open
      // holds one until the connection closes).
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.run(`rm ${path}`, `rm -f -- ${shq(path)}`, { timeoutMs: LEFTOVER_RM_MS }).catch(() => undefined),
        new Promise((resolve) => (timer = setTimeout(resolve, LEFTOVER_RM_MS))),
      ]);
      clearTimeout(timer);
    },
    where: () => this.where,
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
    if (this.lost) return Promise.reject(new UnreachableInstanceError(this.instance, this.lost));
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<void> {
    this.closing = false;
    let opened: Awaited<ReturnType<typeof openSshConnection>>;
    try {
      const full = this.options.connectTimeoutMs ?? 10_000;
      const quick = Math.min(full, Math.max(SUSPECT_CONNECT_MS, 2 * (this.options.keepaliveIntervalMs ?? 2_500)));
      opened = await openSshConnection(this.suspect ? { ...this.options, connectTimeoutMs: quick } : this.options, this.log);
      this.suspect = false;
    } catch (e) {
      if (e instanceof UnreachableInstanceError && /^no SSH answer/.test(e.reason)) this.lost = `${e.reason} (not retried in this run)`;
      throw e;
    }
    const { ssh, hostKey } = opened;
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
      if (this.ssh === ssh) this.ssh = undefined;
      if (this.closing) return;
      const silent = lastError && /keepalive timeout/i.test(lastError.message);
      const ka = `no answer to ${this.options.keepaliveCountMax ?? 3} keepalives ${this.options.keepaliveIntervalMs ?? 2_500} ms apart`;
      const reason = `connection to ${this.where} lost${silent ? `: ${ka}` : lastError ? ` (${lastError.message})` : ''}`;
      if (silent) this.suspect = true;
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
    const started = Date.now();
    const r = await this.run(command, script, options);
    this.log.debug(
      { instance: this.instance, command: commandSummary(command), code: r.code, signal: r.signal, ms: Date.now() - started },
      'exec',
    );
    return r;
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
      let release: (() => void) | undefined;
      const finish = (err: Error | undefined, result?: ExecResult) => {
        if (settled) return;
        settled = true;
        timers.forEach(clearTimeout);
        this.inFlight.delete(abort);
        release?.();
        if (err) reject(err);
        else resolve(result!);
      };
      const abort = (err: Error) => finish(err);
      this.inFlight.add(abort);
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let code: number | null | undefined;
      let signal: string | null = null;
      // Listeners go on in the open callback itself: a fast command's output, exit status and
      // close can arrive in the same socket read as the open confirmation, before any await.
      const attach = (channel: ClientChannel) => {
        channel.on('data', (c: Buffer) => stdout.push(c));
        channel.stderr.on('data', (c: Buffer) => stderr.push(c));
        channel.on('exit', (c: number | null, s?: string) => {
          code = c ?? null;
          signal = s ?? null;
        });
        channel.on('close', () => {
          const out = () => Buffer.concat(stdout).toString('utf8');
          const err = () => Buffer.concat(stderr).toString('utf8');
          if (code === undefined) {
            // ssh2 emits the connection's 'close' (which fails every operation in flight as
            // unreachable) before it closes the channels of a dropped connection: a channel that
            // closes without an exit status on a live connection is the server's doing.
            if (this.ssh?.connection !== conn) {
              finish(new UnreachableInstanceError(this.instance, `connection to ${this.where} lost while running \`${commandSummary(command)}\``));
            } else finish(undefined, { code: null, signal: null, stdout: out(), stderr: `${err()}\nlockstep: ${this.where} closed the command without an exit status\n` });
            return;
          }
          finish(undefined, { code, signal, stdout: out(), stderr: err() });
        });
      };
      this.openChannel<ClientChannel>(conn, 'start a command', (cb) => conn.exec(remote, cb), attach).then(({ channel, release: giveBack }) => {
        if (settled) {
          channel.close();
          giveBack();
          return;
        }
        release = giveBack;
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
      }, (e: Error) => finish(e));
    });
  }

  /**
   * Open one channel on `conn` through its ChannelGate: wait for a slot; when sshd refuses the
   * open while other channels of ours are open, the gate lowers its limit and the open waits for
   * one of them to close; when it refuses with none open (a session that just ended can still
   * count for a moment), bounded retries 50 ms, 100 ms, ... apart.
   * @param attach called with the channel in the open callback itself (put listeners on there).
   * @returns the channel and the function that frees its slot (call it when the channel closed).
   * @throws SftpUnavailable when the server has no SFTP subsystem; UnreachableInstanceError.
   */
  private async openChannel<C>(
    conn: Client,
    what: string,
    open: (cb: (err: Error | undefined, channel: C) => void) => void,
    attach?: (channel: C) => void,
  ): Promise<{ channel: C; release: () => void }> {
    const gate = this.gates.get(conn) ?? new ChannelGate(MAX_CHANNELS);
    this.gates.set(conn, gate);
    for (let attempt = 0; ; ) {
      const release = await gate.acquire();
      const r = await new Promise<{ err?: Error; channel?: C; thrown?: boolean }>((resolve) => {
        try {
          open((err, channel) => {
            if (!err) attach?.(channel);
            resolve({ err, channel });
          });
        } catch (e) {
          // ssh2 throws (instead of calling back) when the socket is already gone.
          resolve({ err: e as Error, thrown: true });
        }
      });
      if (!r.err) return { channel: r.channel!, release };
      const live = !r.thrown && this.ssh?.connection === conn;
      if (live && /Channel open failure/.test(r.err.message)) {
        const queued = gate.refused();
        release();
        if (queued) {
          this.log.debug({ instance: this.instance, limit: gate.limit }, 'ssh: channel refused (MaxSessions); queueing');
          continue;
        }
        if (attempt < CHANNEL_OPEN_RETRIES) {
          await new Promise((res) => setTimeout(res, 50 * 2 ** attempt++));
          if (this.ssh?.connection === conn) continue;
        }
      } else release();
      if (/Unable to start subsystem/.test(r.err.message)) throw new SftpUnavailable(r.err.message);
      if (!live) throw new UnreachableInstanceError(this.instance, `connection to ${this.where} lost (${r.err.message})`);
      throw new UnreachableInstanceError(this.instance, `cannot ${what} on ${this.where}: ${r.err.message}`);
    }
  }

  /**
   * Run `fn` with an SFTP session of its own, closed afterwards (so it holds a channel only while
   * it works). A connection drop while it runs becomes UnreachableInstanceError.
   */
  private async withSftp<T>(fn: (sftp: SFTPWrapper) => Promise<T>): Promise<T> {
    const conn = await this.connection();
    const { channel: sftp, release } = await this.openChannel<SFTPWrapper>(conn, 'open SFTP', (cb) => conn.sftp(cb));
    let abort: (err: Error) => void = () => {};
    const dropped = new Promise<never>((_, reject) => {
      abort = reject;
    });
    dropped.catch(() => undefined);
    this.inFlight.add(abort);
    try {
      return await Promise.race([fn(sftp), dropped]);
    } finally {
      this.inFlight.delete(abort);
      // The slot is free once the server closed its side; a stopped sftp-server never does, so
      // after a grace the slot is given back anyway (sshd then may refuse an open: see openChannel).
      const grace = setTimeout(release, CLOSE_GRACE_MS);
      grace.unref();
      sftp.once('close', () => {
        clearTimeout(grace);
        release();
      });
      try {
        sftp.end();
      } catch {
        release();
      }
    }
  }

  /** True once the server refused the SFTP subsystem: files then go through exec + stdin. */
  private sftpUnavailable = false;

  /** The server refused the SFTP subsystem: from now on files go through a command channel. */
  private noSftp(e: SftpUnavailable): void {
    if (this.sftpUnavailable) return;
    this.sftpUnavailable = true;
    this.log.warn({ instance: this.instance, error: e.message }, 'ssh: no SFTP on this host, files go through exec');
  }

  /**
   * Copy a local file to `remotePath`: to a temp name in the same directory, then an atomic
   * rename over the target, so readers never see a partial file. The file keeps the local
   * file's permission bits. Over SFTP (rename: OpenSSH's posix-rename extension); when the
   * server has no SFTP subsystem, by streaming the file to `cat` on one command channel.
   * @param options bounds (default: the transport's `upload` option): no progress for
   *   `noProgressMs`, `timeoutMs` in all, or `signal`: the transfer is abandoned, the temp file removed.
   * @throws Error with code ENOENT/EACCES/EIO (e.g. ENOENT for a missing parent directory);
   *   TransferError (stalled, too slow, interrupted); UnreachableInstanceError when the connection drops.
   */
  putFile(localPath: string, remotePath: string, options: PutFileOptions = {}): Promise<void> {
    const up = this.options.upload ?? { noProgressMs: 15_000, timeoutMs: 600_000 };
    return putRemoteFile(this.files, this.instance, localPath, remotePath, {
      noProgressMs: options.noProgressMs ?? up.noProgressMs,
      timeoutMs: options.timeoutMs ?? up.timeoutMs,
      signal: options.signal,
    });
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
