/** Finding an already-built release (for `deploy --release` and rollbacks) in the artifacts dir. */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from '../../config/errors.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { Manifest } from './manifest.ts';
import { computeDigest } from './digest.ts';

export interface LocalRelease {
  manifest: Manifest;
  manifestFile: string;
  artifact: string;
}

/** Default artifacts directory for an inventory. */
export function artifactsDir(inventory: Inventory): string {
  return resolve(inventory.dir, 'dist', 'artifacts');
}

/**
 * Load a built release by id, by `latest`, or by the path of its manifest file.
 * @throws ConfigError when it cannot be found, or its manifest's digest does not match its files.
 */
export function loadLocalRelease(inventory: Inventory, ref: string): LocalRelease {
  const dir = artifactsDir(inventory);
  let manifestFile: string;
  if (ref.endsWith('.json')) manifestFile = resolve(ref);
  else {
    let id = ref;
    if (ref === 'latest') {
      const latest = resolve(dir, 'latest');
      if (!existsSync(latest)) throw new ConfigError(`no release has been built yet (${latest} missing): run \`lockstep build\``);
      id = readFileSync(latest, 'utf8').trim();
    }
    manifestFile = resolve(dir, `${id}.manifest.json`);
  }
  if (!existsSync(manifestFile)) {
    throw new ConfigError(`release ${ref} not found: ${manifestFile} does not exist (run \`lockstep build\`, or name a built release id)`);
  }
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as Manifest;
  } catch (e) {
    throw new ConfigError(`${manifestFile} is not valid JSON: ${(e as Error).message}`);
  }
  if (computeDigest(manifest.files) !== manifest.digest) {
    throw new ConfigError(`${manifestFile}: its digest does not match its file list (edited by hand?): rebuild with \`lockstep build\``);
  }
  const artifact = resolve(manifestFile, '..', manifest.artifact.file);
  if (!existsSync(artifact)) throw new ConfigError(`artifact ${artifact} for release ${manifest.release} is missing: rebuild it`);
  return { manifest, manifestFile, artifact };
}
