/**
 * What release this process is running: read once at startup from `manifest.json` in the
 * release root (the parent of `server/`), so /version reports the code actually running even
 * after `current` is switched to another release.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ReleaseInfo {
  /** Release id, or "dev" when there is no manifest (a plain build or a dev run). */
  release: string;
  /** Release digest (sha256 hex), or null without a manifest. */
  digest: string | null;
}

/**
 * The release root of a module URL: `<root>/server/index.mjs` -> `<root>`.
 * @param moduleUrl import.meta.url of the running bundle.
 */
export function releaseRootOf(moduleUrl: string): string {
  return dirname(dirname(fileURLToPath(moduleUrl)));
}

/**
 * Read the release identity from `<releaseRoot>/manifest.json`.
 * @returns {release, digest}; {release: "dev", digest: null} when the file is missing.
 * @throws Error when the manifest exists but is not valid JSON or lacks release/digest: a
 *   release with a broken manifest must not start and claim to be something it is not.
 */
export function readReleaseInfo(releaseRoot: string): ReleaseInfo {
  let text: string;
  try {
    text = readFileSync(join(releaseRoot, 'manifest.json'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { release: 'dev', digest: null };
    throw e;
  }
  const parsed = JSON.parse(text) as { release?: unknown; digest?: unknown };
  if (typeof parsed.release !== 'string' || typeof parsed.digest !== 'string') {
    throw new Error(`${join(releaseRoot, 'manifest.json')}: "release" and "digest" must be strings`);
  }
  return { release: parsed.release, digest: parsed.digest };
}
