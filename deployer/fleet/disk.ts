/**
 * Disk hygiene on one instance: the free-space preflight (can this host take the release?) and
 * the removal of what killed or failed deploys leave behind (partial uploads, staging dirs).
 * The remote commands are built in remote/commands.ts.
 */
import { LockstepError } from '../../config/errors.ts';
import type { Manifest } from '../build/manifest.ts';
import * as cmd from '../remote/commands.ts';
import type { InstanceOps } from './instance.ts';

/** Allocation unit assumed per unpacked file (most filesystems allocate 4 KiB blocks). */
const BLOCK_BYTES = 4096;

/** What `cmd.diskSpace` printed. */
export interface DiskSpace {
  /** Bytes available to the deploy user on deploy_to's filesystem. */
  freeBytes: number;
  /** Bytes held by leftovers of killed deploys, which the deploy removes before uploading. */
  leftoverBytes: number;
  /** Size of `artifacts/<digest>.tar.gz` when present, else null. */
  artifactBytes: number | null;
  /** True when `releases/<id>` exists already. */
  releaseExists: boolean;
}

/** Parse `cmd.diskSpace` output. @throws Error when a line is missing or not a number. */
export function parseDiskSpace(text: string): DiskSpace {
  const fields = new Map(text.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf(' ')), l.slice(l.indexOf(' ') + 1).trim()]));
  const num = (k: string): number => {
    const v = Number(fields.get(k));
    if (!fields.get(k) || !Number.isFinite(v)) throw new Error(`disk space check: no number for "${k}" in ${JSON.stringify(text)}`);
    return v;
  };
  const artifact = fields.get('artifact');
  return {
    freeBytes: num('free'),
    leftoverBytes: num('leftovers'),
    artifactBytes: artifact && artifact !== '-' ? Number(artifact) : null,
    releaseExists: fields.get('release') === 'yes',
  };
}

/** The bytes a release needs on an instance, split by what takes them. */
export interface SpaceNeed {
  /** The artifact upload (0 when the host has a file of the artifact's size already). */
  artifactBytes: number;
  /** The unpacked release: every manifest file's size rounded up to 4 KiB (0 when releases/<id> exists). */
  releaseBytes: number;
  /** The inventory's `deploy.free_space_margin_bytes`. */
  marginBytes: number;
  total: number;
}

/**
 * How many bytes an instance needs free to take `manifest`: the artifact unless the host has it
 * (same size), plus the unpacked release unless its directory exists, plus `marginBytes`.
 * During an unpack both the artifact and the unpacked files exist at once, so they add up.
 */
export function spaceNeeded(manifest: Manifest, disk: DiskSpace, marginBytes: number): SpaceNeed {
  const artifactBytes = disk.artifactBytes === manifest.artifact.bytes ? 0 : manifest.artifact.bytes;
  const releaseBytes = disk.releaseExists ? 0 : manifest.files.reduce((s, f) => s + Math.ceil(Math.max(f.size, 1) / BLOCK_BYTES) * BLOCK_BYTES, 0);
  return { artifactBytes, releaseBytes, marginBytes, total: artifactBytes + releaseBytes + marginBytes };
}

/** `1234567` -> `1,234,567`. */
function bytes(n: number): string {
  return `${n.toLocaleString('en-US')} bytes`;
}

/**
 * The free-space preflight of one instance (changes nothing): the space it has (free bytes plus
 * the leftovers a deploy removes first) must cover `spaceNeeded`.
 * @returns what was read and what is needed.
 * @throws LockstepError LOCKSTEP_NO_SPACE (exit 3) naming the instance, deploy_to, the free and
 *   the needed bytes.
 */
export async function checkFreeSpace(o: InstanceOps, manifest: Manifest, marginBytes: number): Promise<{ disk: DiskSpace; need: SpaceNeed }> {
  const disk = parseDiskSpace(await o.run(cmd.diskSpace(o.layout, manifest.release, manifest.digest)));
  const need = spaceNeeded(manifest, disk, marginBytes);
  const available = disk.freeBytes + disk.leftoverBytes;
  if (available < need.total) {
    const leftovers = disk.leftoverBytes ? ` (+ ${bytes(disk.leftoverBytes)} of leftovers that would be removed)` : '';
    throw new LockstepError(
      'LOCKSTEP_NO_SPACE',
      `not enough free space on ${o.name} for ${manifest.release} in ${o.layout.root}: ${bytes(disk.freeBytes)} free${leftovers}, ${bytes(need.total)} needed ` +
        `(artifact ${bytes(need.artifactBytes)} + unpacked release ${bytes(need.releaseBytes)} + margin ${bytes(need.marginBytes)}, deploy.free_space_margin_bytes); ` +
        'free space on the host or lower deploy.keep_releases',
      3,
    );
  }
  return { disk, need };
}
