/**
 * The local transport: instances that are directories on this machine (the embedded default
 * fleet). Same contract as SSH, no network.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { commandSummary, silentLogger, type TransportLogger } from './log.ts';
import { buildScript } from './shell.ts';
import type { ExecOptions, ExecResult, Transport } from './types.ts';

/** After SIGTERM, a command that is still alive this long later gets SIGKILL. */
const KILL_GRACE_MS = 5_000;

/** Runs commands with `bash -c` and copies files on this machine. */
export class LocalTransport implements Transport {
  private readonly log: TransportLogger;

  /**
   * @param instance instance name, used in messages.
   * @param options.log where commands are logged (a pino logger fits). Default: nowhere.
   */
  constructor(
    readonly instance: string,
    options: { log?: TransportLogger } = {},
  ) {
    this.log = options.log ?? silentLogger;
  }

  /** Nothing to open; present for the contract. */
  async connect(): Promise<void> {}

  /**
   * Run `command` with `bash -c` (env exported and cwd entered by the script, see shell.ts).
   * The command gets its own process group so a timeout stops everything it started.
   * @param options.timeoutMs after this many ms the group gets SIGTERM (SIGKILL 5 s later if it
   *   is still alive); the result then has `code: null, signal: 'SIGTERM'` (or `'SIGKILL'`).
   * @returns code/signal/stdout/stderr; never throws for a non-zero exit.
   * @throws Error when bash itself cannot be started or an env name is not a shell identifier.
   */
  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const script = buildScript(command, options);
    const started = Date.now();
    const result = await this.run(script, options);
    this.log.debug(
      { instance: this.instance, command: commandSummary(command), code: result.code, signal: result.signal, ms: Date.now() - started },
      'exec',
    );
    return result;
  }

  private run(script: string, options: ExecOptions): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const child = spawn('bash', ['-c', script], {
        env: { ...process.env, ...options.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => stdout.push(c));
      child.stderr.on('data', (c: Buffer) => stderr.push(c));
      const timers: NodeJS.Timeout[] = [];
      const killGroup = (signal: NodeJS.Signals) => {
        try {
          process.kill(-child.pid!, signal);
        } catch {
          // The group is already gone: nothing left to stop.
        }
      };
      if (options.timeoutMs !== undefined) {
        timers.push(
          setTimeout(() => {
            killGroup('SIGTERM');
            timers.push(setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS));
          }, options.timeoutMs),
        );
      }
      child.on('error', (err) => {
        timers.forEach(clearTimeout);
        reject(err);
      });
      // 'close' (not 'exit') so all output is collected before we answer.
      child.on('close', (code, signal) => {
        timers.forEach(clearTimeout);
        resolve({
          code,
          signal,
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: Buffer.concat(stderr).toString('utf8'),
        });
      });
    });
  }

  /**
   * Copy a file to `remotePath` atomically: copy to a temp name in the same directory, then
   * rename over the target, so readers never see a half-written file.
   * @throws fs errors (e.g. ENOENT when the parent directory does not exist).
   */
  async putFile(localPath: string, remotePath: string): Promise<void> {
    const tmp = join(dirname(remotePath), `.${basename(remotePath)}.tmp-${randomBytes(6).toString('hex')}`);
    try {
      await copyFile(localPath, tmp);
      await rename(tmp, remotePath);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** Read a UTF-8 file. @throws fs errors (ENOENT when missing). */
  readFile(remotePath: string): Promise<string> {
    return readFile(remotePath, 'utf8');
  }

  async close(): Promise<void> {}
}
