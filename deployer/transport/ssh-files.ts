/**
 * Files over an SSH connection: putRemoteFile (to a temp name, then an atomic rename, keeping
 * the local file's mode) and readRemoteFile, over SFTP, or through one command channel (`cat`)
 * when the server has no SFTP subsystem; and SFTP and command failures turned into Node-style
 * error codes (ENOENT, EACCES, EIO) so callers branch as with fs. Uploads over SFTP are watched
 * (no progress, overall time, abort signal: TransferError, temp file removed). The functions work
 * over what SshTransport (ssh.ts) lends them (SshFileChannel): an SFTP session per call, its
 * command channels.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Readable } from 'node:stream';
import type { SFTPWrapper } from 'ssh2';
import { TransferError } from '../../config/errors.ts';
import { shq } from './shell.ts';
import type { ExecResult } from './types.ts';

/** What the file functions need from the transport that owns the connection. */
export interface SshFileChannel {
  /** False once the server refused the SFTP subsystem: files then go through a command. */
  useSftp(): boolean;
  /**
   * Run `fn` with an SFTP session of its own (closed afterwards); a connection drop while it runs
   * becomes UnreachableInstanceError. @throws SftpUnavailable when the server has no SFTP.
   */
  withSftp<T>(fn: (sftp: SFTPWrapper) => Promise<T>): Promise<T>;
  /** Record that the server has no SFTP (later calls of useSftp() say false). */
  noSftp(e: SftpUnavailable): void;
  /**
   * Run `script` with bash on a command channel, in line with the other commands. `stdin`, when
   * given, is called once the command starts and its stream is piped to the script.
   */
  runScript(command: string, script: string, stdin?: () => Readable): Promise<ExecResult>;
  /** Remove a leftover temp file on its own command channel (bounded, best effort, never throws). */
  removeLeftover(path: string): Promise<void>;
  /** `user@host:port`, for messages. */
  where(): string;
}

/** Turn an SFTP status error into a Node-style error code so callers branch as with fs. */
function sftpError(op: string, path: string, err: Error & { code?: unknown }): Error {
  // SFTP status codes (draft-ietf-secsh-filexfer-02 section 7): 2 no such file, 3 permission denied.
  const code = err.code === 2 ? 'ENOENT' : err.code === 3 ? 'EACCES' : 'EIO';
  return Object.assign(new Error(`${op} ${path}: ${err.message}`), { code });
}

/** The server refused the SFTP subsystem (not a connection problem). */
export class SftpUnavailable extends Error {}

/** A failed file command (`cat`, `mv`), with the same error codes as sftpError. */
function commandFileError(op: string, path: string, stderr: string): Error {
  const code = /No such file/i.test(stderr) ? 'ENOENT' : /Permission denied/i.test(stderr) ? 'EACCES' : 'EIO';
  return Object.assign(new Error(`${op} ${path}: ${stderr.trim().split('\n').pop() ?? 'failed'}`), { code });
}

/**
 * Copy a local file to `remotePath`: to a temp name in the same directory, then an atomic
 * rename over the target, so readers never see a partial file. The file keeps the local
 * file's permission bits. Over SFTP (rename: OpenSSH's posix-rename extension); when the
 * server has no SFTP subsystem, by streaming the file to `cat` on one command channel.
 * Over SFTP the transfer is watched: no byte acknowledged for `bounds.noProgressMs`, more than
 * `bounds.timeoutMs` in all, or `bounds.signal` aborted: the SFTP session is closed, the temp
 * file removed (on a command channel of its own: a stalled sftp-server cannot do it) and
 * TransferError thrown.
 * @throws Error with code ENOENT/EACCES/EIO (e.g. ENOENT for a missing parent directory);
 *   TransferError (stalled, too slow, interrupted); UnreachableInstanceError when the connection drops.
 */
export async function putRemoteFile(
  ch: SshFileChannel,
  instance: string,
  localPath: string,
  remotePath: string,
  bounds: { noProgressMs: number; timeoutMs: number; signal?: AbortSignal },
): Promise<void> {
  const mode = (await stat(localPath)).mode & 0o7777;
  const tmp = `${dirname(remotePath)}/.${basename(remotePath)}.tmp-${randomBytes(6).toString('hex')}`;
  if (bounds.signal?.aborted) throw new TransferError(instance, remotePath, 'interrupted (signal) before it started', true);
  if (ch.useSftp()) {
    // The bounds cover the whole transfer, opening the SFTP session included (a stalled server
    // may never answer its version handshake).
    const watch = startWatch(instance, remotePath, bounds);
    try {
      await Promise.race([
        watch.failed,
        ch.withSftp(async (sftp) => {
          await new Promise<void>((resolve, reject) => {
            // After the watch fired, withSftp closes the session: fastPut's late error is moot.
            const step = (sent: number) => watch.progress(sent);
            sftp.fastPut(localPath, tmp, { mode, step }, (err) => (err ? reject(sftpError('upload to', tmp, err)) : resolve()));
            watch.failed.catch(reject);
          });
          await new Promise<void>((resolve, reject) =>
            sftp.ext_openssh_rename(tmp, remotePath, (err) => (err ? reject(sftpError('rename to', remotePath, err)) : resolve())),
          );
        }),
      ]);
      return;
    } catch (e) {
      if (e instanceof SftpUnavailable) ch.noSftp(e);
      else {
        // The temp name is ours alone; remove it whatever happened (a dropped connection is
        // opened again for this; a host that stopped answering keeps it until the next
        // deploy's `prepare` removes leftovers).
        await ch.removeLeftover(tmp);
        throw e;
      }
    } finally {
      watch.stop();
    }
  }
  const q = shq;
  const script =
    `cat > ${q(tmp)} && chmod ${mode.toString(8)} ${q(tmp)} && mv -f ${q(tmp)} ${q(remotePath)}` +
    ` || { rc=$?; rm -f ${q(tmp)}; exit $rc; }`;
  const r = await ch.runScript(`put ${remotePath}`, script, () => createReadStream(localPath));
  if (r.code !== 0 || r.signal !== null) throw commandFileError('upload to', remotePath, r.stderr);
}

/**
 * Watch a transfer: `failed` rejects with TransferError when no progress was reported for
 * `noProgressMs`, the whole took longer than `timeoutMs`, or `signal` aborted; `progress(bytes)`
 * reports bytes acknowledged so far; `stop()` ends the watch (then `failed` never settles).
 */
function startWatch(
  instance: string,
  path: string,
  bounds: { noProgressMs: number; timeoutMs: number; signal?: AbortSignal },
): { failed: Promise<never>; progress(sent: number): void; stop(): void } {
  let sent = 0;
  let stopped = false;
  let idle: NodeJS.Timeout | undefined;
  let overall: NodeJS.Timeout | undefined;
  const begun = Date.now();
  let fail: (e: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => {
    fail = reject;
  });
  failed.catch(() => undefined);
  const stop = () => {
    stopped = true;
    clearTimeout(idle);
    clearTimeout(overall);
    bounds.signal?.removeEventListener('abort', onAbort);
  };
  const fire = (reason: string, interrupted = false) => {
    if (stopped) return;
    stop();
    fail(new TransferError(instance, path, reason, interrupted));
  };
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => fire(`stalled: no progress for ${bounds.noProgressMs} ms after ${sent} bytes (deploy.upload_no_progress_ms)`), bounds.noProgressMs);
  };
  const onAbort = () => fire(`interrupted (signal) after ${sent} bytes in ${Date.now() - begun} ms`, true);
  overall = setTimeout(() => fire(`did not finish within ${bounds.timeoutMs} ms (${sent} bytes sent; deploy.upload_timeout_ms)`), bounds.timeoutMs);
  bounds.signal?.addEventListener('abort', onAbort, { once: true });
  arm();
  return {
    failed,
    progress(n) {
      sent = n;
      if (!stopped) arm();
    },
    stop,
  };
}

/**
 * Read a UTF-8 file (over SFTP, or `cat` when the server has no SFTP).
 * @throws Error with code ENOENT when missing (EACCES, EIO otherwise); UnreachableInstanceError.
 */
export async function readRemoteFile(ch: SshFileChannel, remotePath: string): Promise<string> {
  if (ch.useSftp()) {
    try {
      const buf = await ch.withSftp(
        (sftp) =>
          new Promise<Buffer>((resolve, reject) =>
            sftp.readFile(remotePath, (err: Error | undefined, data: Buffer) => (err ? reject(sftpError('read', remotePath, err)) : resolve(data))),
          ),
      );
      return buf.toString('utf8');
    } catch (e) {
      if (!(e instanceof SftpUnavailable)) throw e;
      ch.noSftp(e);
    }
  }
  const r = await ch.runScript(`read ${remotePath}`, `cat -- ${shq(remotePath)}`);
  if (r.code !== 0 || r.signal !== null) throw commandFileError('read', remotePath, r.stderr);
  return r.stdout;
}
