/**
 * Pure builders of the asset-store commands (`<deploy_to>/assets/`, see fleet/assets.ts): each
 * returns the exact shell text and runs nothing. Kept beside `commands.ts` (same rules: every
 * value quoted with `shq`, POSIX shell and GNU coreutils/findutils on the instance).
 *
 * The store holds the hashed frontend assets (`app.hashed_assets_dir` of each release, same
 * relative paths) of every release in the retention window, so any instance can answer for a page
 * built by any of them. A name in the store is never given another body: publishing refuses a
 * name that exists with different content, and files appear by rename(2), never half-written.
 */
import { releaseDir, type Layout } from './layout.ts';
import { shq } from '../transport/shell.ts';

/** One hashed asset: its path relative to the assets dir and the sha256 (hex) of its body. */
export interface StoreAsset {
  path: string;
  sha256: string;
}

/** Exit code of `publishAssets` when some name exists in the store with another body. */
export const ASSET_CONFLICT_EXIT = 21;
/** Exit code of `publishAssets` when a copy failed or did not hash to the manifest's sha256. */
export const ASSET_COPY_FAILED_EXIT = 22;

/** Asset paths that may reach a shell: relative, no `.`/`..` segment, no space or quote. */
export const SAFE_ASSET_PATH = /^(?!\.{1,2}(?:\/|$))(?!.*\/\.{1,2}(?:\/|$))[A-Za-z0-9._~@+-]+(?:\/[A-Za-z0-9._~@+-]+)*$/;

function checked(assets: StoreAsset[]): StoreAsset[] {
  for (const a of assets) {
    if (!SAFE_ASSET_PATH.test(a.path)) throw new Error(`not a safe asset path: ${JSON.stringify(a.path)}`);
    if (!/^[0-9a-f]{64}$/.test(a.sha256)) throw new Error(`not a sha256 for ${a.path}: ${a.sha256}`);
  }
  return assets;
}

/**
 * Copies the assets of release `id` (from `releases/<id>/<assetsDir>/`) into the store. First
 * every name is checked: one that exists with another body prints
 * `conflict\t<path>\t<expected sha>\t<found sha>` and, after all are checked, the command exits
 * `ASSET_CONFLICT_EXIT` having copied nothing. Then each missing name is copied to a temp file
 * in the store, hashed, and renamed into place (`added\t<path>`); a copy that fails or does not
 * hash to its sha256 prints `failed\t<path>` and exits `ASSET_COPY_FAILED_EXIT`. Names already
 * there with the same body are left alone. Parse with `parsePublishOutput`.
 * @throws Error for an unsafe path, a non-hex sha256 or a bad release id (programming errors).
 */
export function publishAssets(layout: Layout, id: string, assetsDir: string, assets: StoreAsset[]): string {
  const list = checked(assets);
  const src = `${releaseDir(layout, id)}/${assetsDir}`;
  return [
    `store=${shq(layout.assets)}; src=${shq(src)}; t="$store/.lockstep-tmp-$$"`,
    'mkdir -p -- "$store" || exit 22',
    'bad=0',
    `c() { if [ -e "$store/$2" ] || [ -L "$store/$2" ]; then a=$(sha256sum < "$store/$2" 2>/dev/null | cut -c1-64); if [ "$a" != "$1" ]; then printf 'conflict\\t%s\\t%s\\t%s\\n' "$2" "$1" "\${a:-unreadable}"; bad=1; fi; fi; }`,
    ...list.map((a) => `c ${a.sha256} ${shq(a.path)}`),
    `[ "$bad" = 0 ] || exit ${ASSET_CONFLICT_EXIT}`,
    `p() { [ -e "$store/$2" ] && return 0; { mkdir -p -- "$(dirname -- "$store/$2")" && cp -- "$src/$2" "$t" && chmod 644 "$t" && [ "$(sha256sum < "$t" | cut -c1-64)" = "$1" ] && mv -f -- "$t" "$store/$2"; } || { rm -f -- "$t"; printf 'failed\\t%s\\n' "$2"; exit ${ASSET_COPY_FAILED_EXIT}; }; printf 'added\\t%s\\n' "$2"; }`,
    ...list.map((a) => `p ${a.sha256} ${shq(a.path)}`),
    'true',
  ].join('\n');
}

/** What `publishAssets` printed. */
export interface PublishOutput {
  added: string[];
  conflicts: { path: string; expected: string; actual: string }[];
  failed: string[];
}

/** Parse the output of `publishAssets`. */
export function parsePublishOutput(out: string): PublishOutput {
  const r: PublishOutput = { added: [], conflicts: [], failed: [] };
  for (const line of out.split('\n')) {
    const [kind, path, expected, actual] = line.split('\t');
    if (!path) continue;
    if (kind === 'added') r.added.push(path);
    else if (kind === 'failed') r.failed.push(path);
    else if (kind === 'conflict') r.conflicts.push({ path, expected: expected ?? '', actual: actual ?? '' });
  }
  return r;
}

/**
 * Prints `<path>\t<sha256>` for each of `paths` in the store, or `<path>\t-` when it is not a
 * regular file there (read-only, for drift). Parse with `parseStoreHashes`.
 * @throws Error for an unsafe path.
 */
export function hashStoreAssets(layout: Layout, paths: string[]): string {
  for (const p of paths) if (!SAFE_ASSET_PATH.test(p)) throw new Error(`not a safe asset path: ${JSON.stringify(p)}`);
  return [
    `store=${shq(layout.assets)}`,
    `h() { if [ -f "$store/$1" ]; then printf '%s\\t%s\\n' "$1" "$(sha256sum < "$store/$1" | cut -c1-64)"; else printf '%s\\t-\\n' "$1"; fi; }`,
    ...paths.map((p) => `h ${shq(p)}`),
    'true',
  ].join('\n');
}

/** Parse `hashStoreAssets` output: path -> sha256, or null when absent. */
export function parseStoreHashes(out: string): Map<string, string | null> {
  const m = new Map<string, string | null>();
  for (const line of out.split('\n')) {
    const [path, hash] = line.split('\t');
    if (path && hash) m.set(path, hash === '-' ? null : hash);
  }
  return m;
}

/**
 * Removes every file of the store whose path is not in `keep` (and temp files of interrupted
 * publishes), then empty directories; prints `removed\t<path>` per file. A missing store is
 * nothing to do. Only run under the deploy lock (a publish in flight would lose its temp file).
 * @throws Error for an unsafe path in `keep`.
 */
export function pruneAssetStore(layout: Layout, keep: string[]): string {
  for (const p of keep) if (!SAFE_ASSET_PATH.test(p)) throw new Error(`not a safe asset path: ${JSON.stringify(p)}`);
  const store = shq(layout.assets);
  return [
    `[ -d ${store} ] || exit 0`,
    `cd ${store} || exit 12`,
    'k=$(mktemp) || exit 13',
    // An empty keep list must keep nothing, not match every line (grep -f of one empty line would).
    keep.length ? `printf '%s\\n' ${keep.map(shq).join(' ')} > "$k"` : `printf '/\\n' > "$k"`,
    `find . -type f -printf '%P\\n' | LC_ALL=C grep -vxF -f "$k" | while IFS= read -r f; do rm -f -- "$f" && printf 'removed\\t%s\\n' "$f"; done`,
    'rm -f -- "$k"',
    'find . -mindepth 1 -type d -empty -delete',
    'true',
  ].join('\n');
}

/**
 * Removes `paths` from the store (only for `drift --repair`, on names whose body differs from the
 * trusted manifest: the corrupt body goes, then publishing puts the right one back).
 * @throws Error for an unsafe path.
 */
export function removeStoreAssets(layout: Layout, paths: string[]): string {
  for (const p of paths) if (!SAFE_ASSET_PATH.test(p)) throw new Error(`not a safe asset path: ${JSON.stringify(p)}`);
  if (paths.length === 0) return 'true';
  return `cd ${shq(layout.assets)} && rm -f -- ${paths.map(shq).join(' ')}`;
}
