/**
 * Files over an SSH connection: putRemoteFile (to a temp name, then an atomic rename, keeping
 * the local file's mode) and readRemoteFile, over SFTP, or through one command channel (`cat`)
 * when the server has no SFTP subsystem; and SFTP and command failures turned into Node-style
 * error codes (ENOENT, EACCES, EIO) so callers branch as with fs. The functions work over what
 * SshTransport (ssh.ts) lends them (SshFileChannel): its SFTP session, its command channels.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { Readable } from 'node:stream';
import type { SFTPWrapper } from 'ssh2';
import { UnreachableInstanceError } from '../../config/errors.ts';
import { shq } from './shell.ts';
import type { ExecResult } from './types.ts';

/** One SFTP operation; it calls `done` once, with an error or its value. */
export type SftpOp<T> = (sftp: SFTPWrapper, done: (err: Error | undefined | null, value?: T) => void) => void;

/** What the file functions need from the transport that owns the connection. */
export interface SshFileChannel {
  /** True: use SFTP. False: the server does not offer it, files go through a command. */
  useSftp(): Promise<boolean>;
  /** Run one SFTP operation; a connection drop while it runs becomes UnreachableInstanceError. */
  withSftp<T>(op: SftpOp<T>): Promise<T>;
  /**
   * Run `script` with bash on a command channel, in line with the other commands. `stdin`, when
   * given, is called once the command starts and its stream is piped to the script.
   */
  runScript(command: string, script: string, stdin?: () => Readable): Promise<ExecResult>;
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
 * @throws Error with code ENOENT/EACCES/EIO (e.g. ENOENT for a missing parent directory);
 *   UnreachableInstanceError when the connection drops.
 */
export async function putRemoteFile(ch: SshFileChannel, localPath: string, remotePath: string): Promise<void> {
  const mode = (await stat(localPath)).mode & 0o7777;
  const tmp = `${dirname(remotePath)}/.${basename(remotePath)}.tmp-${randomBytes(6).toString('hex')}`;
  if (!(await ch.useSftp())) {
    const q = shq;
    const script =
      `cat > ${q(tmp)} && chmod ${mode.toString(8)} ${q(tmp)} && mv -f ${q(tmp)} ${q(remotePath)}` +
      ` || { rc=$?; rm -f ${q(tmp)}; exit $rc; }`;
    const r = await ch.runScript(`put ${remotePath}`, script, () => createReadStream(localPath));
    if (r.code !== 0 || r.signal !== null) throw commandFileError('upload to', remotePath, r.stderr);
    return;
  }
  try {
    await ch.withSftp<void>((sftp, done) =>
      sftp.fastPut(localPath, tmp, { mode }, (err) => done(err && sftpError('upload to', tmp, err))),
    );
    await ch.withSftp<void>((sftp, done) =>
      sftp.ext_openssh_rename(tmp, remotePath, (err) => done(err && sftpError('rename to', remotePath, err))),
    );
  } catch (e) {
    if (!(e instanceof UnreachableInstanceError)) {
      await ch.withSftp<void>((sftp, done) => sftp.unlink(tmp, () => done(undefined))).catch(() => undefined);
    }
    throw e;
  }
}

/**
 * Read a UTF-8 file (over SFTP, or `cat` when the server has no SFTP).
 * @throws Error with code ENOENT when missing (EACCES, EIO otherwise); UnreachableInstanceError.
 */
export async function readRemoteFile(ch: SshFileChannel, remotePath: string): Promise<string> {
  if (!(await ch.useSftp())) {
    const r = await ch.runScript(`read ${remotePath}`, `cat -- ${shq(remotePath)}`);
    if (r.code !== 0 || r.signal !== null) throw commandFileError('read', remotePath, r.stderr);
    return r.stdout;
  }
  const buf = await ch.withSftp<Buffer>((sftp, done) =>
    sftp.readFile(remotePath, (err: Error | undefined, data: Buffer) => done(err && sftpError('read', remotePath, err), data)),
  );
  return buf.toString('utf8');
}
