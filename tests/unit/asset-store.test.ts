// The asset-store command builders run here through bash against real directories (the same text
// an SSH host runs), and the retention rule `assetsToKeep`.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ASSET_CONFLICT_EXIT,
  hashStoreAssets,
  parsePublishOutput,
  parseStoreHashes,
  pruneAssetStore,
  publishAssets,
  removeStoreAssets,
  type StoreAsset,
} from '../../deployer/remote/asset-store.ts';
import { assetsToKeep, hashedAssets } from '../../deployer/fleet/assets.ts';
import { layoutOf } from '../../deployer/remote/layout.ts';
import type { Manifest } from '../../deployer/build/manifest.ts';

const ID_A = '20261130T0800Z-aaaaaaaa';
const ID_B = '20261130T0900Z-bbbbbbbb';
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function sh(command: string): { code: number | null; stdout: string } {
  const r = spawnSync('bash', ['-c', command], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout };
}

/** A deploy_to with releases/<id>/public/assets/<files>; @returns the layout and each release's assets. */
function fixture(releases: Record<string, Record<string, string>>) {
  const root = mkdtempSync(join(tmpdir(), 'asset store '));
  const assets: Record<string, StoreAsset[]> = {};
  for (const [id, files] of Object.entries(releases)) {
    assets[id] = [];
    for (const [path, body] of Object.entries(files)) {
      const p = join(root, 'releases', id, 'public/assets', path);
      mkdirSync(join(p, '..'), { recursive: true });
      writeFileSync(p, body);
      assets[id]!.push({ path, sha256: sha(body) });
    }
  }
  return { root, layout: layoutOf(root), assets };
}

const storeFiles = (root: string) => (existsSync(join(root, 'assets')) ? readdirSync(join(root, 'assets'), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(join(root, 'assets').length + 1)).sort() : []);

describe('asset store commands', () => {
  it('publishAssets copies every asset of a release, verified, and is a no-op the second time', () => {
    const { root, layout, assets } = fixture({ [ID_A]: { 'index-11111111.js': 'a()', 'sub/x-22222222.css': 'b{}' } });
    const first = sh(publishAssets(layout, ID_A, 'public/assets', assets[ID_A]!));
    expect(first.code).toBe(0);
    expect(parsePublishOutput(first.stdout).added.sort()).toEqual(['index-11111111.js', 'sub/x-22222222.css']);
    expect(readFileSync(join(root, 'assets/sub/x-22222222.css'), 'utf8')).toBe('b{}');
    const again = sh(publishAssets(layout, ID_A, 'public/assets', assets[ID_A]!));
    expect(again.code).toBe(0);
    expect(parsePublishOutput(again.stdout).added).toEqual([]);
    expect(storeFiles(root)).toEqual(['index-11111111.js', 'sub/x-22222222.css']);
  });

  it('a name already in the store with another body is a conflict naming the file; nothing is copied or overwritten', () => {
    const { root, layout, assets } = fixture({
      [ID_A]: { 'same-33333333.js': 'old body' },
      [ID_B]: { 'new-44444444.js': 'new', 'same-33333333.js': 'other body' },
    });
    expect(sh(publishAssets(layout, ID_A, 'public/assets', assets[ID_A]!)).code).toBe(0);
    const r = sh(publishAssets(layout, ID_B, 'public/assets', assets[ID_B]!));
    expect(r.code).toBe(ASSET_CONFLICT_EXIT);
    expect(parsePublishOutput(r.stdout).conflicts).toEqual([{ path: 'same-33333333.js', expected: sha('other body'), actual: sha('old body') }]);
    expect(readFileSync(join(root, 'assets/same-33333333.js'), 'utf8')).toBe('old body');
    expect(storeFiles(root)).toEqual(['same-33333333.js']);
  });

  it('a copy that does not hash to the manifest is refused and leaves no file', () => {
    const { root, layout } = fixture({ [ID_A]: { 'edited-55555555.js': 'edited on the host' } });
    const r = sh(publishAssets(layout, ID_A, 'public/assets', [{ path: 'edited-55555555.js', sha256: sha('as built') }]));
    expect(r.code).toBe(22);
    expect(parsePublishOutput(r.stdout).failed).toEqual(['edited-55555555.js']);
    expect(storeFiles(root)).toEqual([]);
  });

  it('hashStoreAssets reports each file sha256 or absence; removeStoreAssets removes only the named', () => {
    const { layout, assets, root } = fixture({ [ID_A]: { 'a-66666666.js': 'a', 'b-77777777.js': 'b' } });
    sh(publishAssets(layout, ID_A, 'public/assets', assets[ID_A]!));
    const hashes = parseStoreHashes(sh(hashStoreAssets(layout, ['a-66666666.js', 'gone-88888888.js'])).stdout);
    expect(hashes).toEqual(new Map([['a-66666666.js', sha('a')], ['gone-88888888.js', null]]));
    expect(sh(removeStoreAssets(layout, ['a-66666666.js'])).code).toBe(0);
    expect(storeFiles(root)).toEqual(['b-77777777.js']);
  });

  it('pruneAssetStore removes names not kept, interrupted temp files and empty dirs; an empty keep list empties it', () => {
    const { root, layout, assets } = fixture({ [ID_A]: { 'keep-99999999.js': 'k', 'sub/drop-aaaaaaaa.js': 'd', 'drop-bbbbbbbb.css': 'c' } });
    sh(publishAssets(layout, ID_A, 'public/assets', assets[ID_A]!));
    writeFileSync(join(root, 'assets/.lockstep-tmp-123'), 'partial');
    const r = sh(pruneAssetStore(layout, ['keep-99999999.js', 'not-there-cccccccc.js']));
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(['removed\t.lockstep-tmp-123', 'removed\tdrop-bbbbbbbb.css', 'removed\tsub/drop-aaaaaaaa.js']);
    expect(storeFiles(root)).toEqual(['keep-99999999.js']);
    expect(existsSync(join(root, 'assets/sub'))).toBe(false);
    expect(sh(pruneAssetStore(layout, [])).code).toBe(0);
    expect(storeFiles(root)).toEqual([]);
    // No store yet: nothing to do.
    expect(sh(pruneAssetStore(layoutOf(join(root, 'nothing-here')), ['x'])).code).toBe(0);
  });

  it('builders refuse paths that are not plain names', () => {
    const layout = layoutOf('/srv/app');
    for (const bad of ['../etc/passwd', 'a/../b', 'a b.js', "x'.js", '.', '']) {
      expect(() => hashStoreAssets(layout, [bad]), bad).toThrow(/not a safe asset path/);
      expect(() => pruneAssetStore(layout, [bad]), bad).toThrow(/not a safe asset path/);
    }
  });
});

describe('assetsToKeep and hashedAssets', () => {
  const manifest = (release: string, paths: string[]): Manifest =>
    ({ release, files: paths.map((path) => ({ path, size: 1, mode: '644', sha256: sha(path) })) }) as unknown as Manifest;

  it('keeps the union of the hashed assets of every kept release, relative to the assets dir', () => {
    const a = manifest(ID_A, ['public/index.html', 'public/assets/index-1.js', 'public/assets/shared-2.css', 'server/index.mjs']);
    const b = manifest(ID_B, ['public/assets/index-3.js', 'public/assets/shared-2.css']);
    expect(assetsToKeep([a, b], 'public/assets')).toEqual(['index-1.js', 'index-3.js', 'shared-2.css']);
    expect(assetsToKeep([a, b], null)).toEqual([]);
    expect(hashedAssets(a, 'public/assets')).toEqual([
      { path: 'index-1.js', sha256: sha('public/assets/index-1.js') },
      { path: 'shared-2.css', sha256: sha('public/assets/shared-2.css') },
    ]);
  });

  it('a file name that cannot be a hashed asset is an error naming the file', () => {
    expect(() => hashedAssets(manifest(ID_A, ['public/assets/bad name.js']), 'public/assets')).toThrow(/public\/assets\/bad name\.js/);
  });
});
