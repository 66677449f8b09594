// SshTransport against real OpenSSH sshd test hosts on loopback (127.0.0.51, ...).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, UnreachableInstanceError } from '../../config/errors.ts';
import { createTransport } from '../../deployer/transport/index.ts';
import { loadInventory } from '../../config/inventory.ts';
import { LocalTransport } from '../../deployer/transport/local.ts';
import { SshTransport, type SshTransportOptions } from '../../deployer/transport/ssh.ts';
import { closeFleet, openTransport } from './fixture.ts';
import { startSshHosts, type SshFleet, type SshHost } from '../helpers/sshd.ts';

let fleet: SshFleet;
const open: SshTransport[] = [];

beforeAll(async () => {
  fleet = await startSshHosts(3, { baseAddress: '127.0.0.51' });
});
afterAll(() => closeFleet(fleet, open));

function transportFor(host: SshHost, extra: Partial<SshTransportOptions> = {}): SshTransport {
  return openTransport(fleet, open, host, extra);
}

/** "client_ip client_port server_ip server_port" of the SSH connection a command ran on. */
async function connectionOf(t: SshTransport): Promise<string> {
  const r = await t.exec('echo "$SSH_CONNECTION"');
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

/** Running (a zombie waiting for a reaper counts as dead). The test hosts are on this machine. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe('exec over SSH', () => {
  it('returns exit codes and output exactly', async () => {
    const t = transportFor(fleet.hosts[0]!);
    expect(await t.exec('echo out; echo err >&2')).toEqual({ code: 0, signal: null, stdout: 'out\n', stderr: 'err\n' });
    expect(await t.exec('exit 3')).toEqual({ code: 3, signal: null, stdout: '', stderr: '' });
    expect(await t.exec('false')).toMatchObject({ code: 1, signal: null });
  });

  it('reports a command killed by a signal as code null + the signal', async () => {
    const t = transportFor(fleet.hosts[0]!);
    expect(await t.exec('kill -KILL $$')).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(await t.exec('kill -TERM $$')).toMatchObject({ code: null, signal: 'SIGTERM' });
  });

  it('runs with bash semantics whatever the login shell', async () => {
    const t = transportFor(fleet.hosts[0]!);
    const r = await t.exec('a=(x y z); echo "${#a[@]}"; [[ -n $BASH_VERSION ]] && echo bash');
    expect(r.stdout).toBe('3\nbash\n');
  });

  it('applies cwd and env (quoted by us, no AcceptEnv needed)', async () => {
    const host = fleet.hosts[0]!;
    const t = transportFor(host);
    const cwd = join(host.deployTo, "dir with 'quote' and space");
    mkdirSync(cwd);
    const value = `it's a "test" $HOME \`id\` ; rm -rf / \\ \nline2`;
    const r = await t.exec('pwd; printf %s "$LOCKSTEP_X"', { cwd, env: { LOCKSTEP_X: value, EMPTY: '' } });
    expect(r).toEqual({ code: 0, signal: null, stdout: `${cwd}\n${value}`, stderr: '' });
  });

  it('fails with code 1 and runs nothing when cwd does not exist', async () => {
    const host = fleet.hosts[0]!;
    const t = transportFor(host);
    const r = await t.exec(`touch ${host.deployTo}/ran`, { cwd: join(host.deployTo, 'missing') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/missing/);
    expect(existsSync(join(host.deployTo, 'ran'))).toBe(false);
  });

  it('keeps large multi-byte UTF-8 output intact across SSH packets', async () => {
    const t = transportFor(fleet.hosts[0]!);
    const r = await t.exec(`for i in $(seq 1 50000); do printf 'é€'; done`);
    expect(r.stdout).toBe('é€'.repeat(50000));
  });

  it('on timeout kills the command and what it started, reporting SIGTERM', async () => {
    const host = fleet.hosts[0]!;
    const t = transportFor(host);
    const pidFile = join(host.deployTo, 'timeout-bg.pid');
    const r = await t.exec(`sleep 60 & echo $! > ${pidFile}; wait`, { timeoutMs: 300 });
    expect(r).toMatchObject({ code: null, signal: 'SIGTERM' });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await until(() => !alive(pid), `background sleep ${pid} to be stopped`);
  });

  it('a command that ignores SIGTERM gets SIGKILL after the grace period', async () => {
    const t = transportFor(fleet.hosts[0]!);
    const r = await t.exec("trap '' TERM; sleep 30", { timeoutMs: 200 });
    expect(r).toMatchObject({ code: null, signal: 'SIGKILL' });
    // Reported by sshd (the remote watchdog worked), not made up by the client-side last resort.
    expect(r.stderr).not.toContain('did not stop the command');
  });

  it('a command with a timeout can `wait` for its own background jobs', async () => {
    const t = transportFor(fleet.hosts[0]!);
    // If the timeout's watchdog were a job of the command's shell, `wait` would wait for it
    // until the timeout fired, and the result would be SIGTERM instead of exit 0.
    const r = await t.exec('sleep 0.3 & wait; echo done', { timeoutMs: 10_000 });
    expect(r).toEqual({ code: 0, signal: null, stdout: 'done\n', stderr: '' });
  });

  it('a command that finishes before its timeout keeps what it left running (e.g. a started service)', async () => {
    const host = fleet.hosts[0]!;
    const t = transportFor(host);
    const r = await t.exec('sleep 4 </dev/null >/dev/null 2>&1 & echo $!', { timeoutMs: 200 });
    expect(r).toMatchObject({ code: 0, signal: null });
    const pid = Number(r.stdout.trim());
    expect(alive(pid)).toBe(true);
    // Longer than the timeout: a watchdog that fired anyway would have killed it by now.
    await new Promise((res) => setTimeout(res, 1500));
    expect(alive(pid)).toBe(true);
    process.kill(pid, 'SIGTERM');
  });
});

describe('one connection per host', () => {
  it('reuses the same SSH connection for every exec, put and read; connect() is idempotent', async () => {
    const host = fleet.hosts[1]!;
    const t = transportFor(host);
    await Promise.all([t.connect(), t.connect()]);
    await t.connect();
    const first = await connectionOf(t);
    const src = join(fleet.dir, 'reuse.txt');
    writeFileSync(src, 'reuse');
    await t.putFile(src, join(host.deployTo, 'reuse.txt'));
    expect(await t.readFile(join(host.deployTo, 'reuse.txt'))).toBe('reuse');
    await Promise.all([t.exec('true'), t.exec('true'), t.exec('true')]);
    expect(await connectionOf(t)).toBe(first);
    // Control: another transport to the same host is another connection (another source port),
    // so the equality above really identifies the connection.
    const other = transportFor(host);
    expect(await connectionOf(other)).not.toBe(first);
  });
});

describe('parallel commands', () => {
  it('runs more commands at once than sshd allows sessions per connection, all on one connection', async () => {
    const t = transportFor(fleet.hosts[1]!);
    const conn = await connectionOf(t);
    // sshd's MaxSessions is 10 by default: 25 parallel channels would be refused without queuing.
    const results = await Promise.all(
      Array.from({ length: 25 }, (_, i) => t.exec(`sleep 0.2; echo "${i} $SSH_CONNECTION"`)),
    );
    expect(results.map((r) => r.code)).toEqual(Array(25).fill(0));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 25 }, (_, i) => `${i} ${conn}\n`));
  });
});

describe('files over SFTP', () => {
  it('putFile writes atomically (no temp left), keeps the mode, overwrites; readFile reads it back', async () => {
    const host = fleet.hosts[1]!;
    const t = transportFor(host);
    const src = join(fleet.dir, 'app.sh');
    writeFileSync(src, '#!/bin/sh\necho héllo wörld\n');
    chmodSync(src, 0o755);
    const target = join(host.deployTo, 'files');
    mkdirSync(target);
    writeFileSync(join(target, 'app.sh'), 'old content');
    await t.putFile(src, join(target, 'app.sh'));
    expect(readFileSync(join(target, 'app.sh'), 'utf8')).toBe('#!/bin/sh\necho héllo wörld\n');
    expect(statSync(join(target, 'app.sh')).mode & 0o777).toBe(0o755);
    expect(readdirSync(target)).toEqual(['app.sh']);
    expect(await t.readFile(join(target, 'app.sh'))).toBe('#!/bin/sh\necho héllo wörld\n');
  });

  it('a large binary file arrives byte for byte', async () => {
    const host = fleet.hosts[1]!;
    const t = transportFor(host);
    const src = join(fleet.dir, 'big.bin');
    writeFileSync(src, randomBytes(3 * 1024 * 1024 + 17));
    await t.putFile(src, join(host.deployTo, 'big.bin'));
    const hashes = await t.exec(`sha256sum ${src} ${join(host.deployTo, 'big.bin')} | cut -d' ' -f1`);
    const [a, b] = hashes.stdout.trim().split('\n');
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).toBe(a);
  });

  it('missing parent directory / missing file -> ENOENT', async () => {
    const host = fleet.hosts[1]!;
    const t = transportFor(host);
    const src = join(fleet.dir, 'x.txt');
    writeFileSync(src, 'x');
    await expect(t.putFile(src, join(host.deployTo, 'no-such-dir', 'x.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(t.readFile(join(host.deployTo, 'no-such-file'))).rejects.toMatchObject({ code: 'ENOENT' });
    // The transport is still usable after a failed file operation.
    expect(await t.exec('echo ok')).toMatchObject({ code: 0, stdout: 'ok\n' });
  });
});

describe('files on a host without SFTP', () => {
  let bare: SshFleet;
  beforeAll(async () => {
    bare = await startSshHosts(1, { baseAddress: '127.0.0.56', sftp: false });
  });
  afterAll(async () => {
    await bare?.stop();
  });

  it('falls back to exec + stdin: atomic put (mode kept, no temp left), read, ENOENT', async () => {
    const host = bare.hosts[0]!;
    const lines: string[] = [];
    const t = new SshTransport({
      instance: host.name,
      host: host.address,
      port: host.port,
      user: bare.user,
      identityFile: bare.identityFile,
      knownHostsFile: bare.knownHostsFile,
      log: pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }),
    });
    open.push(t);
    const src = join(bare.dir, 'payload.bin');
    writeFileSync(src, randomBytes(2 * 1024 * 1024 + 3));
    chmodSync(src, 0o750);
    const target = join(host.deployTo, 'files');
    mkdirSync(target);
    writeFileSync(join(target, 'payload.bin'), 'old');
    await t.putFile(src, join(target, 'payload.bin'));
    expect(lines.some((l) => l.includes('no SFTP'))).toBe(true);
    expect(readFileSync(join(target, 'payload.bin')).equals(readFileSync(src))).toBe(true);
    expect(statSync(join(target, 'payload.bin')).mode & 0o777).toBe(0o750);
    expect(readdirSync(target)).toEqual(['payload.bin']);

    writeFileSync(join(target, 'text.txt'), 'héllo\n');
    expect(await t.readFile(join(target, 'text.txt'))).toBe('héllo\n');
    await expect(t.readFile(join(target, 'missing.txt'))).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(t.putFile(src, join(host.deployTo, 'no-such-dir', 'x'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(readdirSync(host.deployTo)).toEqual(['files']);
  });
});

describe('authentication', () => {
  it('a key the host does not accept -> UnreachableInstanceError naming the instance', async () => {
    const host = fleet.hosts[1]!;
    const wrongKey = join(fleet.dir, 'wrong_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
    const t = transportFor(host, { identityFile: wrongKey });
    const err = await t.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnreachableInstanceError);
    expect((err as UnreachableInstanceError).instance).toBe(host.name);
    expect((err as Error).message).toMatch(/authentication failed/);
    expect((err as Error).message).not.toContain(readFileSync(wrongKey, 'utf8').split('\n')[1]!);
  });

  it('a missing, encrypted or malformed identity file is a configuration error', async () => {
    const missing = transportFor(fleet.hosts[1]!, { identityFile: join(fleet.dir, 'no_such_key') });
    await expect(missing.connect()).rejects.toBeInstanceOf(ConfigError);
    const encrypted = join(fleet.dir, 'encrypted_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'a passphrase', '-f', encrypted]);
    const err = await transportFor(fleet.hosts[1]!, { identityFile: encrypted }).connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(encrypted);
    const junk = join(fleet.dir, 'junk_key');
    writeFileSync(junk, 'not a key\n');
    await expect(transportFor(fleet.hosts[1]!, { identityFile: junk }).connect()).rejects.toBeInstanceOf(ConfigError);
  });
});

describe('unreachable hosts', () => {
  it('a stopped host -> UnreachableInstanceError; a connection dropped mid-command too; back up -> reconnects', async () => {
    const host = fleet.hosts[2]!;
    const t = transportFor(host);
    const marker = join(host.deployTo, 'long-command-started');
    const running = t.exec(`touch ${marker}; sleep 60`);
    const outcome = running.catch((e: unknown) => e);
    await until(() => existsSync(marker), 'the long command to start');
    await fleet.stopHost(host.name);

    const dropped = await outcome;
    expect(dropped).toBeInstanceOf(UnreachableInstanceError);
    expect((dropped as UnreachableInstanceError).instance).toBe(host.name);
    expect((dropped as Error).message).toContain(host.name);

    const fresh = transportFor(host);
    const refused = await fresh.connect().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(UnreachableInstanceError);
    expect((refused as Error).message).toMatch(new RegExp(`instance ${host.name} is unreachable: connection refused`));
    // The old transport's next command fails the same way instead of hanging.
    await expect(t.exec('true')).rejects.toBeInstanceOf(UnreachableInstanceError);

    await fleet.startHost(host.name);
    expect(await t.exec('echo back')).toMatchObject({ code: 0, stdout: 'back\n' });
  });
});

describe('silent hosts', () => {
  it('a host that stops answering (frozen) -> running command fails as unreachable via keepalive; close() returns', async () => {
    const host = fleet.hosts[2]!;
    const t = transportFor(host, { keepaliveIntervalMs: 200 });
    const idle = transportFor(host);
    await idle.connect();
    const marker = join(host.deployTo, 'frozen-command-started');
    const outcome = t.exec(`touch ${marker}; sleep 5`).catch((e: unknown) => e);
    await until(() => existsSync(marker), 'the command to start');
    fleet.freezeHost(host.name);
    try {
      const err = await outcome;
      expect(err).toBeInstanceOf(UnreachableInstanceError);
      expect((err as Error).message).toContain(`instance ${host.name} is unreachable`);
      // Closing a connection to a host that never answers again must not hang.
      await idle.close();
    } finally {
      fleet.thawHost(host.name);
    }
    expect(await t.exec('echo thawed')).toMatchObject({ code: 0, stdout: 'thawed\n' });
  });
});

describe('connect timeout', () => {
  it('a port that accepts TCP but never speaks SSH -> UnreachableInstanceError within the bound', async () => {
    const accepted: Socket[] = [];
    const silent = createServer((sock) => {
      accepted.push(sock);
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.54', () => r()));
    const port = (silent.address() as AddressInfo).port;
    try {
      const t = transportFor({ ...fleet.hosts[0]!, name: 'silent-1', address: '127.0.0.54', port }, { connectTimeoutMs: 500 });
      const err = await t.connect().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnreachableInstanceError);
      expect((err as Error).message).toMatch(/instance silent-1 is unreachable: no SSH answer .* within 500 ms/);
    } finally {
      accepted.forEach((sock) => sock.destroy());
      silent.close();
    }
  });
});

describe('logging', () => {
  it('logs connections and commands to a pino logger, never key material or env values', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const host = fleet.hosts[0]!;
    const file = join(fleet.dir, 'known_hosts.logging');
    writeFileSync(file, '');
    const t = transportFor(host, { log, knownHostsFile: file, trustUnknown: true });
    await t.exec('echo "$SECRET_VALUE" >/dev/null', { env: { SECRET_VALUE: 'hunter2-do-not-log' } });
    const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.map((r) => r.msg)).toEqual(['ssh host key recorded (trusted on first use)', 'ssh connected', 'exec']);
    expect(records[1]).toMatchObject({ instance: host.name, host: host.address, port: host.port, fingerprint: host.hostKeyFingerprint });
    expect(records[2]).toMatchObject({ instance: host.name, command: 'echo "$SECRET_VALUE" >/dev/null', code: 0, signal: null });
    const all = lines.join('');
    expect(all).not.toContain('hunter2-do-not-log');
    const keyBody = readFileSync(fleet.identityFile, 'utf8').split('\n').slice(1, -2).join('');
    for (const chunk of keyBody.match(/.{1,20}/g)!) expect(all).not.toContain(chunk);
  });
});

describe('createTransport', () => {
  it('picks ssh or local from an inventory written by the test fleet', async () => {
    const file = fleet.writeInventory();
    const inventory = loadInventory(file);
    expect(inventory.instances.map((i) => i.host)).toEqual(fleet.hosts.map((h) => h.address));
    const ssh = createTransport(inventory.instances[0]!, inventory);
    expect(ssh).toBeInstanceOf(SshTransport);
    open.push(ssh as SshTransport);
    expect(await ssh.exec('echo "$SSH_CONNECTION"')).toMatchObject({ code: 0, stdout: expect.stringContaining(`${fleet.hosts[0]!.address} ${fleet.hosts[0]!.port}`) });
    const local = createTransport({ ...inventory.instances[0]!, transport: 'local' }, inventory);
    expect(local).toBeInstanceOf(LocalTransport);
  });
});
