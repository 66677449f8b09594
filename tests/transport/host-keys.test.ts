// Host-key verification against real sshd hosts (127.0.0.61, ...). sshd logs at VERBOSE so the
// tests can see whether a client authenticated ("Accepted publickey") or not.
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, HostKeyMismatchError, UnknownHostKeyError } from '../../config/errors.ts';
import { SshTransport, type SshTransportOptions } from '../../deployer/transport/ssh.ts';
import { closeFleet, openTransport } from './fixture.ts';
import { startSshHosts, type SshFleet, type SshHost } from '../helpers/sshd.ts';

let fleet: SshFleet;
const open: SshTransport[] = [];

beforeAll(async () => {
  fleet = await startSshHosts(4, { baseAddress: '127.0.0.61', logLevel: 'VERBOSE' });
});
afterAll(() => closeFleet(fleet, open));

function transportFor(host: SshHost, extra: Partial<SshTransportOptions> = {}): SshTransport {
  return openTransport(fleet, open, host, extra);
}

function knownHostsWith(name: string, lines: string[]): string {
  const file = join(fleet.dir, name);
  writeFileSync(file, lines.join('\n') + (lines.length ? '\n' : ''));
  return file;
}

function pubKeyLine(host: SshHost): string {
  const [type, b64] = readFileSync(`${host.hostKeyFile}.pub`, 'utf8').trim().split(/\s+/);
  return `${type} ${b64}`;
}

function acceptedLogins(host: SshHost): number {
  return readFileSync(host.logFile, 'utf8').split('\n').filter((l) => l.startsWith('Accepted publickey')).length;
}

describe('known hosts', () => {
  it('accepts a host whose key is recorded, and says so', async () => {
    const host = fleet.hosts[0]!;
    const t = transportFor(host);
    expect(await t.exec('echo ok')).toMatchObject({ code: 0, stdout: 'ok\n' });
    expect(t.verifiedHostKey).toEqual({ fingerprint: host.hostKeyFingerprint, status: 'known' });
  });

  it('accepts hashed entries (ssh-keygen -H) and comma-separated host lists', async () => {
    const host = fleet.hosts[0]!;
    const hashed = join(fleet.dir, 'known_hosts.hashed');
    copyFileSync(fleet.knownHostsFile, hashed);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', hashed], { stdio: 'ignore' });
    expect(readFileSync(hashed, 'utf8')).not.toContain(host.address);
    expect(await transportFor(host, { knownHostsFile: hashed }).exec('true')).toMatchObject({ code: 0 });

    const listed = knownHostsWith('known_hosts.list', [
      '# written by hand',
      `other.example,[${host.address}]:${host.port},10.9.9.9 ${pubKeyLine(host)}`,
    ]);
    expect(await transportFor(host, { knownHostsFile: listed }).exec('true')).toMatchObject({ code: 0 });
  });
});

describe('unreadable known_hosts', () => {
  it('is a configuration error, not an unknown host', async () => {
    // A directory where the file should be: unreadable even for root.
    const err = await transportFor(fleet.hosts[0]!, { knownHostsFile: fleet.dir }).connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain(fleet.dir);
  });
});

describe('unknown hosts', () => {
  it('are refused before authentication, and known_hosts is left alone', async () => {
    const host = fleet.hosts[1]!;
    const empty = knownHostsWith('known_hosts.empty', ['# nothing trusted yet']);
    const before = acceptedLogins(host);
    const err = await transportFor(host, { knownHostsFile: empty }).connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownHostKeyError);
    const e = err as UnknownHostKeyError;
    expect(e.host).toBe(`[${host.address}]:${host.port}`);
    expect(e.actualFingerprint).toBe(host.hostKeyFingerprint);
    expect(e.message).toContain(host.hostKeyFingerprint);
    expect(readFileSync(empty, 'utf8')).toBe('# nothing trusted yet\n');
    expect(acceptedLogins(host)).toBe(before);
  });

  it('are recorded and accepted with trustUnknown, in a line OpenSSH understands', async () => {
    const host = fleet.hosts[1]!;
    const file = knownHostsWith('known_hosts.trust', []);
    const t = transportFor(host, { knownHostsFile: file, trustUnknown: true });
    expect(await t.exec('echo in')).toMatchObject({ code: 0, stdout: 'in\n' });
    expect(t.verifiedHostKey).toEqual({ fingerprint: host.hostKeyFingerprint, status: 'added' });
    // OpenSSH itself finds the recorded key and connects with strict checking on.
    const found = execFileSync('ssh-keygen', ['-F', `[${host.address}]:${host.port}`, '-f', file], { encoding: 'utf8' });
    expect(found).toContain(pubKeyLine(host));
    const out = execFileSync('ssh', [
      '-i', fleet.identityFile,
      '-o', `UserKnownHostsFile=${file}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'BatchMode=yes',
      '-p', String(host.port),
      `${fleet.user}@${host.address}`,
      'echo via-openssh',
    ], { encoding: 'utf8' });
    expect(out).toBe('via-openssh\n');
    // Next time the host is simply known; nothing is appended twice.
    const again = transportFor(host, { knownHostsFile: file });
    await again.connect();
    expect(again.verifiedHostKey?.status).toBe('known');
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);
  });
});

describe('changed host keys', () => {
  it('are refused before authentication, naming host and both fingerprints, even with trustUnknown', async () => {
    const host = fleet.hosts[2]!;
    // Positive control: a normal connection does show up as an authentication in the log.
    const control = transportFor(host);
    const loginsBefore = acceptedLogins(host);
    await control.exec('true');
    await control.close();
    expect(acceptedLogins(host)).toBe(loginsBefore + 1);

    const oldFingerprint = host.hostKeyFingerprint;
    const newFingerprint = await fleet.replaceHostKey(host.name);
    expect(newFingerprint).not.toBe(oldFingerprint);
    const knownBefore = readFileSync(fleet.knownHostsFile, 'utf8');
    const logins = acceptedLogins(host);

    for (const trustUnknown of [false, true]) {
      const err = await transportFor(host, { trustUnknown }).connect().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HostKeyMismatchError);
      const e = err as HostKeyMismatchError;
      expect(e.host).toBe(`[${host.address}]:${host.port}`);
      expect(e.expectedFingerprints).toEqual([oldFingerprint]);
      expect(e.actualFingerprint).toBe(newFingerprint);
      expect(e.message).toContain(oldFingerprint);
      expect(e.message).toContain(newFingerprint);
      expect(e.message).toContain(host.address);
    }
    expect(acceptedLogins(host)).toBe(logins);
    expect(readFileSync(fleet.knownHostsFile, 'utf8')).toBe(knownBefore);
  });

  it('are refused through hashed entries too', async () => {
    const host = fleet.hosts[3]!;
    const hashed = join(fleet.dir, 'known_hosts.hashed-changed');
    copyFileSync(fleet.knownHostsFile, hashed);
    execFileSync('ssh-keygen', ['-q', '-H', '-f', hashed], { stdio: 'ignore' });
    const oldFingerprint = host.hostKeyFingerprint;
    const newFingerprint = await fleet.replaceHostKey(host.name);
    const err = await transportFor(host, { knownHostsFile: hashed }).connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostKeyMismatchError);
    expect((err as HostKeyMismatchError).expectedFingerprints).toEqual([oldFingerprint]);
    expect((err as HostKeyMismatchError).actualFingerprint).toBe(newFingerprint);
  });
});

describe('hosts with several host keys', () => {
  let multi: SshFleet;
  beforeAll(async () => {
    multi = await startSshHosts(1, { baseAddress: '127.0.0.66', extraHostKeyTypes: ['rsa', 'ecdsa'] });
  });
  afterAll(async () => {
    await multi?.stop();
  });

  it('asks for the key type known_hosts records, so a host known by its RSA or ECDSA key is accepted', async () => {
    const host = multi.hosts[0]!;
    for (const key of host.extraHostKeys) {
      const [type, b64] = readFileSync(`${key.file}.pub`, 'utf8').trim().split(/\s+/);
      const file = join(multi.dir, `known_hosts.${key.type}`);
      writeFileSync(file, `[${host.address}]:${host.port} ${type} ${b64}\n`);
      const t = new SshTransport({
        instance: host.name,
        host: host.address,
        port: host.port,
        user: multi.user,
        identityFile: multi.identityFile,
        knownHostsFile: file,
      });
      open.push(t);
      // Left to its default preference the server would present its ed25519 key, which this
      // file does not list, and the connection would be refused as a changed key.
      expect(await t.exec('echo ok')).toMatchObject({ code: 0, stdout: 'ok\n' });
      expect(t.verifiedHostKey).toEqual({ fingerprint: key.fingerprint, status: 'known' });
    }
  });
});
