/**
 * Release identity: the digest of a release's canonical file list (see docs/ARCHITECTURE.md,
 * "Release identity"). The build computes it, every instance check recomputes it.
 */
import { createHash } from 'node:crypto';
import { LockstepError } from '../../config/errors.ts';
import type { Manifest, ManifestFile } from './manifest.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;
const OCTAL_MODE = /^[0-7]{3,4}$/;

/**
 * A manifest whose file list cannot be put in canonical form (a field that would make a line
 * ambiguous, or a path listed twice). Found by a check, so exit 1.
 */
export class InvalidManifestError extends LockstepError {
  constructor(
    readonly path: string | undefined,
    reason: string,
  ) {
    super('LOCKSTEP_MANIFEST_INVALID', `invalid manifest file list${path === undefined ? '' : ` at "${path}"`}: ${reason}`, 1);
  }
}

function checkEntry(file: ManifestFile, index: number): void {
  const where = typeof file?.path === 'string' ? file.path : `files[${index}]`;
  if (typeof file !== 'object' || file === null) throw new InvalidManifestError(undefined, `files[${index}] is not an object`);
  // A newline in a path would let two different file lists produce the same text.
  if (typeof file.path !== 'string' || file.path === '' || file.path.includes('\n')) {
    throw new InvalidManifestError(where, 'path must be a non-empty string without newlines');
  }
  if (typeof file.sha256 !== 'string' || !SHA256_HEX.test(file.sha256)) {
    throw new InvalidManifestError(where, `sha256 must be 64 lowercase hex digits, got ${JSON.stringify(file.sha256)}`);
  }
  if (typeof file.mode !== 'string' || !OCTAL_MODE.test(file.mode)) {
    throw new InvalidManifestError(where, `mode must be octal digits like "644", got ${JSON.stringify(file.mode)}`);
  }
  if (typeof file.size !== 'number' || !Number.isSafeInteger(file.size) || file.size < 0) {
    throw new InvalidManifestError(where, `size must be a non-negative integer (bytes), got ${JSON.stringify(file.size)}`);
  }
}

/**
 * The canonical text the digest is taken over: one line `<sha256> <mode> <size> <path>\n` per
 * file, files sorted by the UTF-8 bytes of their path.
 * @param files the manifest's file list (any order; not modified).
 * @returns the canonical text (empty string for an empty list).
 * @throws InvalidManifestError for a malformed entry or a path listed twice.
 */
export function canonicalFileList(files: readonly ManifestFile[]): string {
  if (!Array.isArray(files)) throw new InvalidManifestError(undefined, 'files is not a list');
  files.forEach(checkEntry);
  // Byte order, not String.prototype order: JS compares UTF-16 code units, which sorts
  // characters above U+FFFF before U+E000..U+FFFF while UTF-8 bytes (and `sort` in C) do not.
  const keyed = files.map((f) => ({ f, key: Buffer.from(f.path, 'utf8') }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  let text = '';
  for (let i = 0; i < keyed.length; i++) {
    const { f, key } = keyed[i]!;
    if (i > 0 && Buffer.compare(keyed[i - 1]!.key, key) === 0) {
      throw new InvalidManifestError(f.path, 'path is listed more than once');
    }
    text += `${f.sha256} ${f.mode} ${f.size} ${f.path}\n`;
  }
  return text;
}

/**
 * The digest (identity) of a release.
 * @param files the manifest's file list (any order).
 * @returns lowercase hex sha256 of `canonicalFileList(files)` (64 characters).
 * @throws InvalidManifestError for a malformed entry or a path listed twice.
 */
export function computeDigest(files: readonly ManifestFile[]): string {
  return createHash('sha256').update(canonicalFileList(files), 'utf8').digest('hex');
}

/** Outcome of `verifyManifestDigest`. `computed` is null when the file list is malformed. */
export type DigestVerification =
  | { ok: true; declared: string; computed: string }
  | { ok: false; declared: string; computed: string | null; reason: string };

/**
 * Check that a manifest's declared digest is the digest of its own file list.
 * @param manifest a parsed manifest (only `digest` and `files` are read; untrusted input is fine).
 * @returns `{ok: true}` when they agree; otherwise `ok: false` with a one-line `reason` naming both
 *   digests, or the malformed entry. Never throws: callers report it as a failed check.
 */
export function verifyManifestDigest(manifest: Pick<Manifest, 'digest' | 'files'>): DigestVerification {
  const declared = typeof manifest?.digest === 'string' ? manifest.digest : '';
  if (!SHA256_HEX.test(declared)) {
    return { ok: false, declared, computed: null, reason: `declared digest ${JSON.stringify(manifest?.digest)} is not 64 lowercase hex digits` };
  }
  let computed: string;
  try {
    computed = computeDigest(manifest.files);
  } catch (e) {
    if (e instanceof InvalidManifestError) return { ok: false, declared, computed: null, reason: e.message };
    throw e;
  }
  if (computed !== declared) {
    return {
      ok: false,
      declared,
      computed,
      reason: `file list hashes to ${computed}, manifest declares ${declared}`,
    };
  }
  return { ok: true, declared, computed };
}
