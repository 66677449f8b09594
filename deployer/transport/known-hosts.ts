/**
 * known_hosts: the host keys Lockstep trusts, in OpenSSH's own file format so operators can
 * read, edit and share the file with `ssh`/`ssh-keygen`.
 *
 * Format source: OpenSSH sshd(8) manual, section "SSH_KNOWN_HOSTS FILE FORMAT":
 *   [marker] hostnames keytype base64-key [comment]
 * - hostnames: comma-separated patterns (`*` and `?` wildcards, `!` negation); a host on a
 *   non-standard port is written `[host]:port`.
 * - a hashed hostname is `|1|base64(salt)|base64(HMAC-SHA1(salt, hostname))` (HashKnownHosts).
 * - `#` starts a comment line; blank lines are ignored.
 * - markers `@cert-authority` and `@revoked`: NOT supported. Lines carrying a marker are skipped
 *   (kept in `ignored` with the reason), so they never make a key trusted. Limitation: a key
 *   listed only as `@revoked` is not actively refused; it is treated like any unlisted key
 *   (unknown -> refused unless the operator trusts unknown hosts explicitly).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** One usable line of a known_hosts file. */
export interface KnownHostEntry {
  /** 1-based line number, for messages. */
  line: number;
  /** Plain patterns (may contain wildcards or `!`), or empty when the line is hashed. */
  patterns: string[];
  /** Set when the hostname field is hashed (`|1|salt|hash`). */
  hashed?: { salt: Buffer; hash: Buffer };
  /** e.g. `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`. */
  keyType: string;
  /** The public key blob (the base64 field, decoded): what the server presents in key exchange. */
  key: Buffer;
}

/** A line that was not used, and why (marker, malformed). */
export interface IgnoredLine {
  line: number;
  reason: string;
}

export interface KnownHosts {
  entries: KnownHostEntry[];
  ignored: IgnoredLine[];
}

/** Result of checking a presented key against known_hosts. */
export type HostKeyCheck =
  | { status: 'known'; fingerprint: string }
  | { status: 'unknown'; fingerprint: string }
  | { status: 'changed'; fingerprint: string; expected: string[] };

/**
 * OpenSSH-style fingerprint of a public key blob: `SHA256:` + base64 of its sha256, without
 * the `=` padding (what `ssh-keygen -lf` and `ssh` print since OpenSSH 6.8).
 * @param keyBlob the raw public key blob (not the base64 text).
 */
export function fingerprint(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/**
 * The key type written at the start of an SSH public key blob (RFC 4253 section 6.6: a
 * uint32 length followed by the type name).
 * @returns e.g. `ssh-ed25519`, or undefined when the blob is malformed.
 */
export function keyTypeOf(keyBlob: Buffer): string | undefined {
  if (keyBlob.length < 4) return undefined;
  const len = keyBlob.readUInt32BE(0);
  if (len === 0 || len > 64 || keyBlob.length < 4 + len) return undefined;
  return keyBlob.subarray(4, 4 + len).toString('latin1');
}

/**
 * The name a host is looked up and recorded under: `host` on port 22, `[host]:port` otherwise
 * (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT).
 */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * Parse the text of a known_hosts file.
 * @returns usable entries and the lines that were skipped with a reason. Never throws: a bad
 *   line must not hide the good ones, and it can only ever make fewer keys trusted.
 */
export function parseKnownHosts(text: string): KnownHosts {
  const entries: KnownHostEntry[] = [];
  const ignored: IgnoredLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/\s+/);
    if (fields[0]!.startsWith('@')) {
      ignored.push({ line, reason: `marker ${fields[0]} is not supported by Lockstep` });
      return;
    }
    const [hostField, keyType, keyText] = fields;
    if (!hostField || !keyType || !keyText || !BASE64.test(keyText)) {
      ignored.push({ line, reason: 'malformed (expected: hostnames keytype base64-key)' });
      return;
    }
    const key = Buffer.from(keyText, 'base64');
    if (keyTypeOf(key) !== keyType) {
      ignored.push({ line, reason: `key blob does not match key type ${keyType}` });
      return;
    }
    if (hostField.startsWith('|')) {
      const parts = hostField.split('|');
      // ['', '1', salt, hash]: HMAC-SHA1 is the only hash type OpenSSH defines.
      if (parts.length !== 4 || parts[1] !== '1' || !parts[2] || !parts[3]) {
        ignored.push({ line, reason: 'unsupported hashed hostname (expected |1|salt|hash)' });
        return;
      }
      const salt = Buffer.from(parts[2], 'base64');
      const hash = Buffer.from(parts[3], 'base64');
      if (salt.length !== 20 || hash.length !== 20) {
        ignored.push({ line, reason: 'malformed hashed hostname (salt and hash must be 20 bytes)' });
        return;
      }
      entries.push({ line, patterns: [], hashed: { salt, hash }, keyType, key });
      return;
    }
    entries.push({ line, patterns: hostField.split(',').filter((p) => p !== ''), keyType, key });
  });
  return { entries, ignored };
}

function wildcardMatch(pattern: string, name: string): boolean {
  const re = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  // Host names are case-insensitive (OpenSSH lowercases them before matching).
  return new RegExp(`^${re}$`, 'i').test(name);
}

/**
 * Does this entry apply to the host? Plain lines: any positive pattern matches and no
 * negated (`!`) pattern matches. Hashed lines: HMAC-SHA1 of the name with the line's salt.
 * @param name the lookup name from `knownHostsName(host, port)`.
 */
export function entryMatches(entry: KnownHostEntry, name: string): boolean {
  if (entry.hashed) {
    const mac = createHmac('sha1', entry.hashed.salt).update(name).digest();
    return timingSafeEqual(mac, entry.hashed.hash);
  }
  let positive = false;
  for (const p of entry.patterns) {
    if (p.startsWith('!')) {
      if (wildcardMatch(p.slice(1), name)) return false;
    } else if (wildcardMatch(p, name)) positive = true;
  }
  return positive;
}

/** All entries recorded for a host (on a port). */
export function findHostKeys(known: KnownHosts, host: string, port: number): KnownHostEntry[] {
  const name = knownHostsName(host, port);
  return known.entries.filter((e) => entryMatches(e, name));
}

/**
 * Compare the key a host presented with what known_hosts records for it.
 * `known`: an entry for this host has exactly this key. `unknown`: no entry for this host.
 * `changed`: the host has entries but none with this key (a different key of any type counts:
 * the transport asks for the recorded key types first, as OpenSSH does, so an honest host
 * presents a recorded type).
 */
export function checkHostKey(known: KnownHosts, host: string, port: number, presented: Buffer): HostKeyCheck {
  const fp = fingerprint(presented);
  const recorded = findHostKeys(known, host, port);
  if (recorded.length === 0) return { status: 'unknown', fingerprint: fp };
  if (recorded.some((e) => e.key.equals(presented))) return { status: 'known', fingerprint: fp };
  return { status: 'changed', fingerprint: fp, expected: [...new Set(recorded.map((e) => fingerprint(e.key)))] };
}

/**
 * Read and parse a known_hosts file. A missing file is an empty one (nothing trusted yet).
 * @throws the fs error for anything but ENOENT (e.g. permission denied).
 */
export async function loadKnownHosts(file: string): Promise<KnownHosts> {
  try {
    return parseKnownHosts(await readFile(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], ignored: [] };
    throw e;
  }
}

// Appends from parallel connections (trustHosts) are serialised per file so the
// "does the file end with a newline" check and the write cannot interleave.
const appendQueues = new Map<string, Promise<void>>();

/**
 * Record a host key: append `name keytype base64` (plain, not hashed, so operators can read
 * it) to the file, creating the file and its directory when missing.
 * @param keyBlob the raw public key blob the host presented.
 * @throws Error when the blob is not a valid SSH public key; fs errors.
 */
export function appendKnownHost(file: string, host: string, port: number, keyBlob: Buffer): Promise<void> {
  const keyType = keyTypeOf(keyBlob);
  if (!keyType) throw new Error('not an SSH public key blob');
  const line = `${knownHostsName(host, port)} ${keyType} ${keyBlob.toString('base64')}\n`;
  const previous = appendQueues.get(file) ?? Promise.resolve();
  const next = previous
    .catch(() => undefined)
    .then(async () => {
      await mkdir(dirname(file), { recursive: true });
      let existing = '';
      try {
        existing = await readFile(file, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      const sep = existing === '' || existing.endsWith('\n') ? '' : '\n';
      await appendFile(file, sep + line, { mode: 0o644 });
    });
  appendQueues.set(file, next);
  return next;
}

/**
 * The server host key algorithms to offer, recorded types first (what OpenSSH does so that a
 * host with several keys presents the one we know, instead of looking "changed").
 * @param recordedTypes key types known for the host, e.g. `['ssh-ed25519']`.
 */
export function preferredHostKeyAlgorithms(recordedTypes: string[]): string[] {
  const defaults = [
    'ssh-ed25519',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'rsa-sha2-512',
    'rsa-sha2-256',
    'ssh-rsa',
  ];
  const first: string[] = [];
  for (const t of recordedTypes) {
    // An RSA key can be presented under any of the RSA signature algorithms (RFC 8332).
    const algos = t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t];
    for (const a of algos) if (defaults.includes(a) && !first.includes(a)) first.push(a);
  }
  return [...first, ...defaults.filter((a) => !first.includes(a))];
}
