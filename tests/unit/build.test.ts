import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRelease } from '../../deployer/build/build.ts';
import { computeDigest } from '../../deployer/build/digest.ts';

function tree(): string {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-build-'));
  mkdirSync(join(dir, 'server'));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'server/index.mjs'), 'console.log("hi")\n');
  writeFileSync(join(dir, 'bin/service'), '#!/bin/sh\necho ok\n');
  chmodSync(join(dir, 'bin/service'), 0o775);
  writeFileSync(join(dir, 'index.html'), '<p>hi</p>\n');
  return dir;
}

const source = { revision: 'abc', dirty: false, time: '2026-11-30T08:02:00Z', pinned: true };

describe('packageRelease', () => {
  it('is reproducible: same tree -> same digest, release id and artifact bytes', async () => {
    const dir = tree();
    const a = await packageRelease(dir, mkdtempSync(join(tmpdir(), 'arts-')), source);
    const b = await packageRelease(dir, mkdtempSync(join(tmpdir(), 'arts-')), { ...source });
    expect(b.digest).toBe(a.digest);
    expect(b.release).toBe(a.release);
    expect(readFileSync(b.artifact).equals(readFileSync(a.artifact))).toBe(true);
    expect(a.release).toBe(`20261130T0802Z-${a.digest.slice(0, 8)}`);
  });

  it('records path, size, normalised mode and sha256 of every file; digest covers them', async () => {
    const dir = tree();
    const r = await packageRelease(dir, mkdtempSync(join(tmpdir(), 'arts-')), source);
    expect(r.manifest.files.map((f) => [f.path, f.mode, f.size])).toEqual([
      ['bin/service', '755', 18],
      ['index.html', '644', 10],
      ['server/index.mjs', '644', 18],
    ]);
    expect(computeDigest(r.manifest.files)).toBe(r.digest);
    const onDisk = JSON.parse(readFileSync(r.manifestFile, 'utf8'));
    expect(onDisk.artifact.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('one changed byte changes the digest', async () => {
    const dir = tree();
    const a = await packageRelease(dir, mkdtempSync(join(tmpdir(), 'arts-')), source);
    writeFileSync(join(dir, 'index.html'), '<p>hI</p>\n');
    const b = await packageRelease(dir, mkdtempSync(join(tmpdir(), 'arts-')), source);
    expect(b.digest).not.toBe(a.digest);
  });
});
