/**
 * A throw-away redis-server for `lockstep demo --redis` and the tests of the shared session
 * store: Debian's /usr/bin/redis-server on one loopback address, no persistence
 * (`--save '' --appendonly no`), stopped with the demo or the test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { LockstepError } from '../../config/errors.ts';

/** Where Debian's redis-server package installs the server; env LOCKSTEP_REDIS_SERVER overrides. */
export const REDIS_SERVER_BIN = '/usr/bin/redis-server';

export interface RunningRedis {
  /** redis://host:port/0, for REDIS_URL. */
  url: string;
  host: string;
  port: number;
  proc: ChildProcess;
  /** What the server printed so far (for failure messages). */
  output(): string;
  /** SIGTERM, then wait for the exit (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

/** True when one PING on `host:port` answers +PONG within `timeoutMs`. */
function pingOnce(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let answer = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      answer += d.toString();
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

/**
 * Start redis-server on `host:port` and wait until it answers PING.
 * @param host a loopback address. @param port a free TCP port.
 * @param deadlineMs bound on the start, ms (default 15000).
 * @returns the running server.
 * @throws LockstepError LOCKSTEP_REDIS when the binary is missing (install Debian's
 *   redis-server package) or the server exits or does not answer in time.
 */
export async function startRedisServer(host: string, port: number, deadlineMs = 15_000): Promise<RunningRedis> {
  const bin = process.env.LOCKSTEP_REDIS_SERVER || REDIS_SERVER_BIN;
  if (!existsSync(bin)) {
    throw new LockstepError('LOCKSTEP_REDIS', `${bin} not found: install redis-server (apt-get install redis-server) or set LOCKSTEP_REDIS_SERVER`, 2);
  }
  const proc = spawn(bin, ['--save', '', '--appendonly', 'no', '--bind', host, '--port', String(port), '--daemonize', 'no', '--dir', '/tmp'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  proc.on('error', (e) => (output += `\n${e.message}`));
  const stop = (): Promise<void> =>
    new Promise((done) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return done();
      const kill = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      proc.once('exit', () => {
        clearTimeout(kill);
        done();
      });
      proc.kill('SIGTERM');
    });
  const until = Date.now() + deadlineMs;
  while (!(await pingOnce(host, port, 1_000))) {
    if (proc.exitCode !== null || Date.now() > until) {
      await stop();
      throw new LockstepError('LOCKSTEP_REDIS', `redis-server on ${host}:${port} did not start: ${output.trim().split('\n').slice(-3).join(' / ') || 'no output'}`, 2);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url: `redis://${host}:${port}/0`, host, port, proc, output: () => output, stop };
}
