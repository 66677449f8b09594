/**
 * Drift of the asset store (`<deploy_to>/assets/`, fleet/assets.ts): every hashed asset of the
 * expected release and of the rollback target must be in the store with the sha256 its trusted
 * manifest records, or a page of that release gets a 404 (or, worse, another body) from an
 * instance that runs a different release. Read-only: one command per instance hashes the files
 * on the host; nothing is downloaded.
 */
import type { Manifest } from '../build/manifest.ts';
import { hashedAssets, publishReleaseAssets } from '../fleet/assets.ts';
import type { InstanceOps } from '../fleet/instance.ts';
import { hashStoreAssets, parseStoreHashes, removeStoreAssets } from '../remote/asset-store.ts';

/** A drift item of kind `asset-store` (same shape as drift's DriftItem). */
export interface AssetStoreItem {
  kind: 'asset-store';
  message: string;
  detail: { release: string; store: string; missing: string[]; changed: { path: string; expected: string; actual: string }[] };
}

const LIST_LIMIT = 5;

function listPaths(paths: string[]): string {
  const head = paths.slice(0, LIST_LIMIT).join(', ');
  return paths.length > LIST_LIMIT ? `${head} ... and ${paths.length - LIST_LIMIT} more` : head;
}

/**
 * Check the instance's asset store against the trusted manifests of the releases that must be
 * servable (the expected release and the rollback target; nulls are skipped).
 * @returns one `asset-store` item per release with missing or changed assets; none when
 *   `app.hashed_assets_dir` is null.
 * @throws RemoteCommandError when the store cannot be read (the instance is then unchecked).
 */
export async function assetStoreDrift(o: InstanceOps, manifests: (Manifest | null)[]): Promise<AssetStoreItem[]> {
  const dir = o.inventory.app.hashed_assets_dir;
  const wanted = manifests.filter((m): m is Manifest => m !== null).map((m) => ({ release: m.release, assets: hashedAssets(m, dir) }));
  const paths = [...new Set(wanted.flatMap((w) => w.assets.map((a) => a.path)))];
  if (!dir || paths.length === 0) return [];
  const found = parseStoreHashes(await o.run(hashStoreAssets(o.layout, paths)));
  const items: AssetStoreItem[] = [];
  for (const w of wanted) {
    const missing = w.assets.filter((a) => (found.get(a.path) ?? null) === null).map((a) => a.path);
    const changed = w.assets
      .filter((a) => found.get(a.path) && found.get(a.path) !== a.sha256)
      .map((a) => ({ path: a.path, expected: a.sha256, actual: found.get(a.path)! }));
    if (missing.length === 0 && changed.length === 0) continue;
    const parts = [
      missing.length ? `missing ${listPaths(missing)}` : '',
      changed.length ? `wrong content ${listPaths(changed.map((c) => `${c.path} (expected ${c.expected.slice(0, 12)}, found ${c.actual.slice(0, 12)})`))}` : '',
    ].filter(Boolean);
    items.push({
      kind: 'asset-store',
      message: `asset store ${o.layout.assets} does not serve release ${w.release} as built: ${parts.join('; ')} (pages of that release from other instances would get 404 or another body)`,
      detail: { release: w.release, store: o.layout.assets, missing, changed },
    });
  }
  return items;
}

/**
 * Repair `asset-store` items on one instance (under the deploy lock, after the releases were
 * made complete on it): names whose body differs from the trusted manifest are removed, then the
 * assets of each release are published again from its verified `releases/<id>`.
 * @param items the instance's `asset-store` items. @param manifests trusted manifests by release id.
 * @returns one action line per release repaired.
 * @throws LockstepError when a release's manifest is not known, RemoteCommandError when a copy fails.
 */
export async function repairAssetStore(o: InstanceOps, items: { detail?: Record<string, unknown> }[], manifests: (Manifest | null)[]): Promise<string[]> {
  const actions: string[] = [];
  for (const item of items) {
    const d = item.detail as AssetStoreItem['detail'] | undefined;
    const manifest = manifests.find((m) => m?.release === d?.release);
    if (!d || !manifest) continue;
    await o.run(removeStoreAssets(o.layout, d.changed.map((c) => c.path)));
    const added = await publishReleaseAssets(o, manifest);
    actions.push(`asset store: ${added.length} asset(s) of ${manifest.release} published${d.changed.length ? ` (${d.changed.length} with a wrong body replaced)` : ''}`);
  }
  return actions;
}
