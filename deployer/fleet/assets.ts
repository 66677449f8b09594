/**
 * The asset store of each instance (`<deploy_to>/assets/`): the hashed frontend assets
 * (`app.hashed_assets_dir`, default `public/assets`) of every release in the retention window,
 * under their paths relative to that dir. The app serves an asset path its own release lacks from
 * there (env `ASSET_FALLBACK_DIR`, docs/ARCHITECTURE.md "App contract"), so during a rolling
 * deploy a page from the new release loads its assets from an instance still on the old one, and
 * a tab opened before the deploy still loads its lazy chunks afterwards (issue 12, item 1).
 *
 * Rules: a deploy publishes the new release's assets on EVERY instance before any activation;
 * a name never gets a second body (a conflict fails the deploy, naming the file); retention
 * removes only names no kept release references.
 */
import { LockstepError, RemoteCommandError } from '../../config/errors.ts';
import type { Manifest } from '../build/manifest.ts';
import * as cmd from '../remote/commands.ts';
import {
  ASSET_CONFLICT_EXIT,
  SAFE_ASSET_PATH,
  parsePublishOutput,
  pruneAssetStore,
  publishAssets,
  type StoreAsset,
} from '../remote/asset-store.ts';
import { releaseDir } from '../remote/layout.ts';
import { reasonOf, type Fleet } from './fleet.ts';
import type { InstanceOps } from './instance.ts';

/**
 * The hashed assets of a release: manifest files under `<assetsDir>/`, with paths relative to it.
 * @param assetsDir `app.hashed_assets_dir`; null (no store) gives an empty list.
 * @throws LockstepError LOCKSTEP_ASSET_NAME (exit 2) naming a file whose name is not a plain
 *   path (spaces, quotes, `..`): such a name cannot be served as a hashed asset.
 */
export function hashedAssets(manifest: Manifest, assetsDir: string | null): StoreAsset[] {
  if (!assetsDir) return [];
  const prefix = `${assetsDir}/`;
  const out: StoreAsset[] = [];
  for (const f of manifest.files) {
    if (!f.path.startsWith(prefix)) continue;
    const path = f.path.slice(prefix.length);
    if (!SAFE_ASSET_PATH.test(path)) {
      throw new LockstepError('LOCKSTEP_ASSET_NAME', `release ${manifest.release}: ${f.path} is not a plain file name (letters, digits, . _ - ~ @ +): rename it in the build, or change app.hashed_assets_dir`, 2);
    }
    out.push({ path, sha256: f.sha256 });
  }
  return out;
}

/**
 * Names the asset store must keep: every hashed asset of every release in `manifests` (the
 * releases kept by retention anywhere in the fleet, plus the one being deployed).
 * @returns sorted unique paths relative to the store.
 */
export function assetsToKeep(manifests: Manifest[], assetsDir: string | null): string[] {
  return [...new Set(manifests.flatMap((m) => hashedAssets(m, assetsDir).map((a) => a.path)))].sort();
}

/**
 * Copy the hashed assets of `manifest` (already unpacked and verified in `releases/<id>`) into
 * this instance's store. Names present with the same body are left alone.
 * @returns the paths added.
 * @throws LockstepError LOCKSTEP_ASSET_CONFLICT (exit 3) naming the instance, each file and both
 *   hashes when a name exists with another body (nothing is copied then); RemoteCommandError
 *   naming the files when a copy fails or does not hash to the manifest's sha256.
 */
export async function publishReleaseAssets(o: InstanceOps, manifest: Manifest): Promise<string[]> {
  const dir = o.inventory.app.hashed_assets_dir;
  const assets = hashedAssets(manifest, dir);
  if (!dir || assets.length === 0) return [];
  const r = await o.transport.exec(publishAssets(o.layout, manifest.release, dir, assets));
  const out = parsePublishOutput(r.stdout);
  if (r.code === ASSET_CONFLICT_EXIT) {
    const list = out.conflicts.map((c) => `${dir}/${c.path} (release ${manifest.release} has sha256 ${c.expected.slice(0, 12)}, the store has ${c.actual.slice(0, 12)})`).join(', ');
    throw new LockstepError(
      'LOCKSTEP_ASSET_CONFLICT',
      `asset store ${o.layout.assets} on ${o.name} already holds ${list}: hashed asset names must be content-addressed, so one name can never be served with two bodies. ` +
        'Make the build put a content hash in these names; if no kept release uses the file, remove it from the store by hand. Nothing was activated.',
      3,
    );
  }
  if (r.code !== 0 || r.signal !== null) {
    const what = out.failed.length ? `copy not verified: ${out.failed.join(', ')}; ` : '';
    throw new RemoteCommandError(o.name, `publish the hashed assets of ${manifest.release} into ${o.layout.assets}`, r.code, r.signal, `${what}${r.stderr}`);
  }
  return out.added;
}

/**
 * Publish the assets of releases already on this instance (e.g. what each instance runs before a
 * deploy), best effort: a release that is not present, or whose manifest on the host is not
 * readable, is skipped; conflicts and copy failures are returned as warnings, not thrown.
 * @returns one warning line per release that could not be published.
 */
export async function publishPresentReleases(o: InstanceOps, ids: string[]): Promise<string[]> {
  const warnings: string[] = [];
  for (const id of ids) {
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await o.transport.readFile(`${releaseDir(o.layout, id)}/manifest.json`)) as Manifest;
      if (manifest.release !== id) continue;
    } catch {
      continue;
    }
    await publishReleaseAssets(o, manifest).catch((e: Error) => warnings.push(`assets of ${id} not published: ${e.message}`));
  }
  return warnings;
}

/**
 * Retention of the asset store, decided for the whole fleet: reads the manifest of every
 * release present on any instance (after release retention) and removes from every store the
 * names none of them references. Nothing is removed anywhere when an instance or a manifest
 * cannot be read (a name still in use must never go).
 * @param protect manifests to keep besides what is present (e.g. the release being deployed).
 * @returns per instance the paths removed; `skipped` says why nothing was pruned.
 */
export async function pruneFleetAssets(fleet: Fleet, protect: Manifest[] = []): Promise<{ removed: Map<string, string[]>; skipped?: string }> {
  const dir = fleet.inventory.app.hashed_assets_dir;
  const removed = new Map<string, string[]>();
  if (!dir) return { removed };
  const read = await fleet.each(async (o) => {
    const ids = (await o.run(cmd.listReleases(o.layout))).split('\n').filter(Boolean);
    return Promise.all(ids.map(async (id) => JSON.parse(await o.transport.readFile(`${releaseDir(o.layout, id)}/manifest.json`)) as Manifest));
  });
  const failed = read.findIndex((r) => r.status === 'rejected');
  if (failed >= 0) return { removed, skipped: `${fleet.ops[failed]!.name}: ${reasonOf(read[failed]!)}` };
  const manifests = [...protect, ...read.flatMap((r) => (r as PromiseFulfilledResult<Manifest[]>).value)];
  const keep = assetsToKeep(manifests, dir);
  await fleet.each(async (o) => {
    const out = await o.run(pruneAssetStore(o.layout, keep));
    removed.set(o.name, out.split('\n').filter((l) => l.startsWith('removed\t')).map((l) => l.slice(8)));
  });
  return { removed };
}
