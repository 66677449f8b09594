/**
 * The transport interface: how the deployer reaches one instance. `ssh` (node-ssh) and
 * `local` (this machine, no SSH) implement it; everything above it is shared code.
 */

/** What one remote command returned. Success is `code === 0 && signal === null`, nothing else. */
export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Working directory on the instance (absolute). */
  cwd?: string;
  /** Extra environment for the command. Values are shell-quoted by the transport. */
  env?: Record<string, string>;
  /** Kill the command after this many ms (result has signal set). Default: no limit. */
  timeoutMs?: number;
}

/** Bounds of one file transfer (putFile). */
export interface PutFileOptions {
  /** Abort the transfer (the partial file is removed); it then fails with TransferError (interrupted). */
  signal?: AbortSignal;
  /** Abort when no byte was acknowledged for this many ms. Default: the transport's setting. */
  noProgressMs?: number;
  /** Abort when the whole transfer takes longer than this many ms. Default: the transport's setting. */
  timeoutMs?: number;
}

export interface Transport {
  /** Instance name, for messages. */
  readonly instance: string;
  /** Open the connection (SSH: verify host key, authenticate). Idempotent. */
  connect(): Promise<void>;
  /** Run a shell command (bash -c semantics) on the instance. Never throws for a non-zero exit. */
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
  /**
   * Copy a local file to an absolute path on the instance (parent directory must exist), through
   * a temp name renamed into place. @throws TransferError when it stalls, overruns or is aborted.
   */
  putFile(localPath: string, remotePath: string, options?: PutFileOptions): Promise<void>;
  /** Read a UTF-8 file from the instance. Throws when missing. */
  readFile(remotePath: string): Promise<string>;
  /** Close the connection. Idempotent. */
  close(): Promise<void>;
}

/** True when a remote command succeeded: exit code 0 and no signal. */
export function succeeded(result: ExecResult): boolean {
  return result.code === 0 && result.signal === null;
}
