import { describe, expect, it } from 'vitest';
import { canonicalFileList, computeDigest, InvalidManifestError, verifyManifestDigest } from '../../deployer/build/digest.ts';
import type { ManifestFile } from '../../deployer/build/manifest.ts';

// Worked by hand with coreutils:
//   printf 'a' | sha256sum            -> ca978112...48bb
//   printf 'bb\n' | sha256sum         -> a81c31ac...7cf1
//   printf '<sha a> 644 1 a.txt\n<sha bb> 755 3 bin/run\n' | sha256sum -> f1c24748...c83f
const SHA_A = 'ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb';
const SHA_BB = 'a81c31ac62620b9215a14ff00544cb07a55b765594f3ab3be77e70923ae27cf1';
const EXPECTED_DIGEST = 'f1c24748aab23290ff1c8e304c5241ff0b2271e57afe376e4f637f06af3dc83f';

// Deliberately out of order: the digest must not depend on the manifest's listing order.
const files: ManifestFile[] = [
  { path: 'bin/run', size: 3, mode: '755', sha256: SHA_BB },
  { path: 'a.txt', size: 1, mode: '644', sha256: SHA_A },
];

describe('computeDigest', () => {
  it('hashes the sorted canonical lines, matching a hand-worked sha256sum', () => {
    expect(canonicalFileList(files)).toBe(`${SHA_A} 644 1 a.txt\n${SHA_BB} 755 3 bin/run\n`);
    expect(computeDigest(files)).toBe(EXPECTED_DIGEST);
    expect(computeDigest([...files].reverse())).toBe(EXPECTED_DIGEST);
  });

  it('an empty release hashes the empty string', () => {
    expect(computeDigest([])).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('changes when any field of any file changes', () => {
    const variants: ManifestFile[][] = [
      [{ ...files[0]!, mode: '644' }, files[1]!],
      [{ ...files[0]!, size: 4 }, files[1]!],
      [{ ...files[0]!, path: 'bin/run2' }, files[1]!],
      [{ ...files[0]!, sha256: SHA_A }, files[1]!],
    ];
    for (const v of variants) expect(computeDigest(v)).not.toBe(EXPECTED_DIGEST);
  });

  it('sorts by UTF-8 bytes, not by JS string order', () => {
    // U+FF21 is EF BC A1 in UTF-8, U+1F600 is F0 9F 98 80: byte order puts U+FF21 first,
    // while UTF-16 order (D83D... < FF21) would put the emoji first.
    const wide = { path: '\uFF21', size: 0, mode: '644', sha256: SHA_A };
    const emoji = { path: '\u{1F600}', size: 0, mode: '644', sha256: SHA_A };
    const upper = { path: 'Z', size: 0, mode: '644', sha256: SHA_A };
    const lines = canonicalFileList([emoji, wide, upper, files[1]!]).trimEnd().split('\n');
    expect(lines.map((l) => l.split(' ').slice(3).join(' '))).toEqual(['Z', 'a.txt', '\uFF21', '\u{1F600}']);
  });

  it('refuses entries that would make the canonical text ambiguous', () => {
    const bad: ManifestFile[] = [
      { path: 'a\nb', size: 1, mode: '644', sha256: SHA_A },
      { path: '', size: 1, mode: '644', sha256: SHA_A },
      { path: 'a', size: -1, mode: '644', sha256: SHA_A },
      { path: 'a', size: 1.5, mode: '644', sha256: SHA_A },
      { path: 'a', size: 1, mode: '6 4', sha256: SHA_A },
      { path: 'a', size: 1, mode: '644', sha256: SHA_A.toUpperCase() },
    ];
    for (const f of bad) expect(() => computeDigest([f]), JSON.stringify(f)).toThrow(InvalidManifestError);
    expect(() => computeDigest([files[1]!, { ...files[1]!, size: 9 }])).toThrow(/listed more than once/);
  });
});

describe('verifyManifestDigest', () => {
  it('accepts a manifest whose digest is its file list', () => {
    expect(verifyManifestDigest({ digest: EXPECTED_DIGEST, files })).toEqual({
      ok: true,
      declared: EXPECTED_DIGEST,
      computed: EXPECTED_DIGEST,
    });
  });

  it('names both digests when the file list does not match', () => {
    const r = verifyManifestDigest({ digest: EXPECTED_DIGEST, files: [files[1]!] });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.computed).toBe(computeDigest([files[1]!]));
      expect(r.reason).toContain(EXPECTED_DIGEST);
      expect(r.reason).toContain(r.computed!);
    }
  });

  it('reports malformed manifests instead of throwing', () => {
    const r1 = verifyManifestDigest({ digest: 'nope', files });
    expect(r1.ok).toBe(false);
    const r2 = verifyManifestDigest({ digest: EXPECTED_DIGEST, files: 'x' as unknown as ManifestFile[] });
    expect(r2).toMatchObject({ ok: false, computed: null });
    const r3 = verifyManifestDigest({ digest: EXPECTED_DIGEST, files: [null as unknown as ManifestFile] });
    expect(r3).toMatchObject({ ok: false, computed: null });
  });
});
