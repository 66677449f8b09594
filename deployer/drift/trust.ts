/**
 * Which manifest a drift scan trusts: one whose own file list hashes to its digest
 * (manifestIsConsistent), found in this machine's dist/artifacts (localRelease) or read from an
 * instance's release directory (readReleaseManifest), and the hash of manifest.json as a deploy
 * writes it (manifestFileSha), which lets a scan skip re-reading a manifest the host already has.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { computeDigest } from '../build/digest.ts';
import type { InstanceOps } from '../fleet/instance.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { Manifest } from '../build/manifest.ts';
import { artifactsDir } from '../build/release-source.ts';
import { releaseDir } from '../remote/layout.ts';

/** True when a manifest's own file list hashes to its digest and it names release `id` (when given). */
export function manifestIsConsistent(m: unknown, id?: string): m is Manifest {
  const man = m as Manifest;
  if (!man || typeof man !== 'object' || !Array.isArray(man.files) || typeof man.digest !== 'string') return false;
  if (id !== undefined && man.release !== id) return false;
  try {
    return computeDigest(man.files) === man.digest;
  } catch {
    return false;
  }
}

/** sha256 of a manifest.json as a deploy writes it into a release dir (see InstanceOps.unpackRelease). */
export function manifestFileSha(m: Manifest): string {
  return createHash('sha256').update(JSON.stringify(m, null, 2) + '\n').digest('hex');
}

/** A local manifest+artifact for `id` in dist/artifacts whose digest matches, or null. */
export function localRelease(inventory: Inventory, id: string, digest: string): { manifest: Manifest; artifact: string | null } | null {
  const file = resolve(artifactsDir(inventory), `${id}.manifest.json`);
  if (!existsSync(file)) return null;
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (!manifestIsConsistent(m, id) || m.digest !== digest) return null;
    const artifact = resolve(file, '..', m.artifact.file);
    return { manifest: m, artifact: existsSync(artifact) ? artifact : null };
  } catch {
    return null;
  }
}

/** Read releases/<id>/manifest.json on one instance; null when missing or not valid JSON. */
export async function readReleaseManifest(o: InstanceOps, id: string): Promise<unknown> {
  try {
    return JSON.parse(await o.transport.readFile(`${releaseDir(o.layout, id)}/manifest.json`)) as unknown;
  } catch {
    return null;
  }
}
