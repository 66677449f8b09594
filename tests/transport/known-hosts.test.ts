// known_hosts parsing and matching, checked against OpenSSH's own ssh-keygen as the oracle
// (fingerprints with -l, hashing with -H, lookup with -F).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendKnownHost,
  checkHostKey,
  fingerprint,
  findHostKeys,
  keyTypeOf,
  knownHostsName,
  loadKnownHosts,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
} from '../../deployer/transport/known-hosts.ts';

let dir: string;
const keys: { type: string; b64: string; blob: Buffer; sshKeygenFingerprint: string }[] = [];

function makeKey(name: string, type: 'ed25519' | 'ecdsa' | 'rsa') {
  const file = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', '', '-f', file]);
  const [keyType, b64] = readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/) as [string, string];
  const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${file}.pub`], { encoding: 'utf8' }).split(/\s+/)[1]!;
  return { type: keyType, b64, blob: Buffer.from(b64, 'base64'), sshKeygenFingerprint: fp };
}

beforeAll(() => {
  dir = mkdtempSync(join(os.tmpdir(), 'lockstep-kh-'));
  keys.push(makeKey('a', 'ed25519'), makeKey('b', 'ed25519'), makeKey('c', 'ecdsa'), makeKey('d', 'rsa'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fingerprint and key type', () => {
  it('matches ssh-keygen -l for ed25519, ecdsa and rsa keys', () => {
    for (const k of keys) {
      expect(fingerprint(k.blob)).toBe(k.sshKeygenFingerprint);
      expect(keyTypeOf(k.blob)).toBe(k.type);
    }
  });

  it('rejects blobs that are not SSH keys', () => {
    expect(keyTypeOf(Buffer.from('xx'))).toBeUndefined();
    expect(keyTypeOf(Buffer.from([0, 0, 1, 0, 65]))).toBeUndefined();
  });
});

describe('parseKnownHosts and lookup', () => {
  it('names hosts like OpenSSH: plain on port 22, [host]:port otherwise', () => {
    expect(knownHostsName('example.org', 22)).toBe('example.org');
    expect(knownHostsName('127.0.0.11', 2222)).toBe('[127.0.0.11]:2222');
  });

  it('reads plain, comma-listed, wildcard and negated patterns; skips comments, markers and junk', () => {
    const [a, b, c] = keys as [(typeof keys)[0], (typeof keys)[0], (typeof keys)[0]];
    const text = [
      '# a comment',
      '',
      `alpha.example,[127.0.0.11]:2222 ${a.type} ${a.b64} a comment after the key`,
      `*.web.example,!bad.web.example ${b.type} ${b.b64}`,
      `@cert-authority *.example ${c.type} ${c.b64}`,
      `@revoked gamma.example ${c.type} ${c.b64}`,
      'broken-line-without-key',
      `mismatch.example ssh-ed25519 ${c.b64}`,
    ].join('\n');
    const known = parseKnownHosts(text);
    expect(known.entries.map((e) => e.line)).toEqual([3, 4]);
    expect(known.ignored.map((i) => i.line)).toEqual([5, 6, 7, 8]);
    expect(known.ignored[0]!.reason).toMatch(/@cert-authority is not supported/);

    expect(checkHostKey(known, 'alpha.example', 22, a.blob).status).toBe('known');
    expect(checkHostKey(known, '127.0.0.11', 2222, a.blob).status).toBe('known');
    // Same address, other port: a different host as far as known_hosts is concerned.
    expect(checkHostKey(known, '127.0.0.11', 22, a.blob).status).toBe('unknown');
    expect(checkHostKey(known, 'API.web.example', 22, b.blob).status).toBe('known');
    expect(checkHostKey(known, 'bad.web.example', 22, b.blob).status).toBe('unknown');
    // A key that appears only on a marker line is never trusted.
    expect(checkHostKey(known, 'gamma.example', 22, c.blob).status).toBe('unknown');
    expect(checkHostKey(known, 'x.example', 22, c.blob).status).toBe('unknown');
  });

  it('reports a changed key with the recorded fingerprints', () => {
    const [a, b] = keys as [(typeof keys)[0], (typeof keys)[0]];
    const known = parseKnownHosts(`[10.0.0.5]:2200 ${a.type} ${a.b64}\n`);
    const check = checkHostKey(known, '10.0.0.5', 2200, b.blob);
    expect(check).toEqual({ status: 'changed', fingerprint: b.sshKeygenFingerprint, expected: [a.sshKeygenFingerprint] });
  });

  it('matches hashed entries written by ssh-keygen -H', () => {
    const [a, , c] = keys as [(typeof keys)[0], (typeof keys)[0], (typeof keys)[0]];
    const file = join(dir, 'hashed_known_hosts');
    writeFileSync(file, `[127.0.0.11]:2222 ${a.type} ${a.b64}\nplain.example ${c.type} ${c.b64}\n`);
    // ssh-keygen -H warns on stderr that the .old backup holds plain names: expected here.
    execFileSync('ssh-keygen', ['-q', '-H', '-f', file], { stdio: 'ignore' });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain('127.0.0.11');
    const known = parseKnownHosts(text);
    expect(known.entries.every((e) => e.hashed)).toBe(true);
    expect(checkHostKey(known, '127.0.0.11', 2222, a.blob).status).toBe('known');
    expect(checkHostKey(known, 'plain.example', 22, c.blob).status).toBe('known');
    expect(checkHostKey(known, '127.0.0.11', 2223, a.blob).status).toBe('unknown');
    expect(checkHostKey(known, 'plain.example', 22, a.blob).status).toBe('changed');
  });

  it('a missing file is empty', async () => {
    expect(await loadKnownHosts(join(dir, 'does-not-exist'))).toEqual({ entries: [], ignored: [] });
  });
});

describe('appendKnownHost', () => {
  it('creates the file, fixes a missing final newline, and writes lines ssh-keygen -F finds', async () => {
    const [a, b] = keys as [(typeof keys)[0], (typeof keys)[0]];
    const file = join(dir, 'sub', 'known_hosts');
    await appendKnownHost(file, '127.0.0.12', 2201, a.blob);
    appendFileSync(file, '# no newline at the end');
    await Promise.all([appendKnownHost(file, '127.0.0.13', 2202, b.blob), appendKnownHost(file, 'db.example', 22, b.blob)]);
    const known = await loadKnownHosts(file);
    expect(known.ignored).toEqual([]);
    expect(findHostKeys(known, '127.0.0.12', 2201).map((e) => fingerprint(e.key))).toEqual([a.sshKeygenFingerprint]);
    expect(checkHostKey(known, '127.0.0.13', 2202, b.blob).status).toBe('known');
    for (const name of ['[127.0.0.12]:2201', '[127.0.0.13]:2202', 'db.example']) {
      const out = execFileSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' });
      expect(out).toContain(`${name} `);
    }
  });
});

describe('preferredHostKeyAlgorithms', () => {
  it('asks for recorded key types first, all RSA signature algorithms for an RSA key', () => {
    expect(preferredHostKeyAlgorithms([])[0]).toBe('ssh-ed25519');
    expect(preferredHostKeyAlgorithms(['ecdsa-sha2-nistp256'])[0]).toBe('ecdsa-sha2-nistp256');
    const rsa = preferredHostKeyAlgorithms(['ssh-rsa']);
    expect(rsa.slice(0, 3)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(new Set(rsa).size).toBe(rsa.length);
  });
});
