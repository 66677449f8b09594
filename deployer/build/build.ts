/**
 * `lockstep build`: build the app once into a reproducible artifact plus its manifest.
 * Same source tree -> same file list -> same digest, release id and artifact bytes.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import * as tar from 'tar';
import { $ } from 'zx/core';
import { computeDigest } from './digest.ts';
import { ConfigError, LockstepError } from '../../config/errors.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { Manifest, ManifestFile } from './manifest.ts';

export interface BuildResult {
  release: string;
  digest: string;
  /** Absolute path of the .tar.gz. */
  artifact: string;
  /** Absolute path of the manifest JSON beside it. */
  manifestFile: string;
  manifest: Manifest;
  files: number;
  /** Total size of the release files in bytes (uncompressed). */
  bytes: number;
  /** Size of the artifact in bytes. */
  artifactBytes: number;
}

export interface BuildOptions {
  /** Where artifacts go; default `<inventory dir>/dist/artifacts`. */
  outDir?: string;
  /** Skip running the build command (package what is already in the output dir). */
  skipCommand?: boolean;
  /** Progress lines (human). */
  onProgress?: (line: string) => void;
}

/** sha256 of a file, streamed. @returns lowercase hex. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

async function walk(root: string, dir = root, out: string[] = []): Promise<string[]> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) await walk(root, full, out);
    else if (entry.isFile()) out.push(relative(root, full).split(sep).join('/'));
    else throw new ConfigError(`build output contains ${full}, which is neither a file nor a directory (symlinks are not allowed in a release)`);
  }
  return out;
}

function git(args: string[], cwd: string): string | null {
  const r = spawnSync('git', args, { cwd, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** Format a time as the release-id prefix `YYYYMMDDTHHMMZ` (UTC). */
export function releaseTimePrefix(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').slice(0, 13) + 'Z';
}

/**
 * The source identity: git revision, whether the tree is dirty, and the source time used for
 * the release id (the artifact's mtimes are fixed, see `packageRelease`). Time: SOURCE_DATE_EPOCH (reproducible-builds.org
 * spec) if set, else the HEAD commit time (`pinned` true), else now (`pinned` false: the
 * release id then differs per build, the digest and archive bytes do not).
 */
export function sourceInfo(dir: string, env = process.env): Manifest['source'] {
  const revision = git(['rev-parse', 'HEAD'], dir);
  const dirty = revision !== null && (git(['status', '--porcelain', '--untracked-files=no'], dir) ?? '') !== '';
  let seconds: number | null = null;
  if (env.SOURCE_DATE_EPOCH && /^\d+$/.test(env.SOURCE_DATE_EPOCH)) seconds = Number(env.SOURCE_DATE_EPOCH);
  else if (revision) seconds = Number(git(['log', '-1', '--format=%ct'], dir));
  const pinned = seconds !== null && Number.isFinite(seconds);
  const time = new Date(pinned ? seconds! * 1000 : Date.now());
  return { revision, dirty, time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'), pinned };
}

/**
 * Package a directory as a release: normalise modes (644, or 755 when owner-executable),
 * hash every file, compute the digest, write the artifact and manifest into `outDir`.
 * @throws ConfigError when the directory is missing or empty.
 */
export async function packageRelease(
  outputDir: string,
  outDir: string,
  source: Manifest['source'],
): Promise<BuildResult> {
  try {
    if (!(await stat(outputDir)).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new ConfigError(`build output directory ${outputDir} does not exist: check app.build.output in the inventory`);
  }
  const paths = (await walk(outputDir)).sort(byteOrder);
  if (paths.length === 0) throw new ConfigError(`build output directory ${outputDir} is empty`);
  const files: ManifestFile[] = [];
  let bytes = 0;
  for (const p of paths) {
    const full = join(outputDir, p);
    const st = await lstat(full);
    // umask differs between machines; the release must not.
    const mode = st.mode & 0o100 ? 0o755 : 0o644;
    await chmod(full, mode);
    files.push({ path: p, size: st.size, mode: mode.toString(8), sha256: await sha256File(full) });
    bytes += st.size;
  }
  const digest = computeDigest(files);
  const time = new Date(source.time);
  const release = `${releaseTimePrefix(time)}-${digest.slice(0, 8)}`;
  await mkdir(outDir, { recursive: true });
  const artifact = resolve(outDir, `${release}.tar.gz`);
  const tmp = `${artifact}.tmp-${process.pid}`;
  try {
    await tar.create(
      {
        gzip: { level: 9 },
        file: tmp,
        cwd: outputDir,
        portable: true, // no uid/gid/uname/atime/ctime
        // One fixed mtime for every release: the archive bytes depend on the files alone, so
        // the same digest is the same artifact under any release id (a host that has
        // artifacts/<digest>.tar.gz need not be sent it again). The source time is in the id.
        mtime: new Date(0),
        noDirRecurse: true,
        strict: true,
      },
      paths,
    );
    await rename(tmp, artifact);
  } finally {
    await rm(tmp, { force: true });
  }
  const artifactSha = await sha256File(artifact);
  const artifactBytes = (await stat(artifact)).size;
  const manifest: Manifest = {
    schema: 1,
    release,
    digest,
    source,
    builtAt: new Date().toISOString(),
    artifact: { file: `${release}.tar.gz`, sha256: artifactSha, bytes: artifactBytes },
    files,
  };
  const manifestFile = resolve(outDir, `${release}.manifest.json`);
  await writeFile(`${manifestFile}.tmp`, JSON.stringify(manifest, null, 2) + '\n');
  await rename(`${manifestFile}.tmp`, manifestFile);
  await writeFile(resolve(outDir, 'latest'), `${release}\n`);
  return { release, digest, artifact, manifestFile, manifest, files: files.length, bytes, artifactBytes };
}

/**
 * Run the inventory's build command once, then package its output as a release.
 * @throws LockstepError (exit 3) when the build command fails; ConfigError for a bad output dir.
 */
export async function buildRelease(inventory: Inventory, options: BuildOptions = {}): Promise<BuildResult> {
  const progress = options.onProgress ?? (() => {});
  const outputDir = resolve(inventory.dir, inventory.app.build.output);
  if (!options.skipCommand) {
    progress(`building: ${inventory.app.build.command}`);
    const r = await $({ cwd: inventory.dir, stdio: ['ignore', 'pipe', 'pipe'], nothrow: true, quiet: true })`/bin/bash -c ${inventory.app.build.command}`;
    if (r.exitCode !== 0 || r.signal) {
      const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-15);
      throw new LockstepError(
        'LOCKSTEP_BUILD_FAILED',
        `build command \`${inventory.app.build.command}\` failed (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`}); nothing was packaged`,
        3,
        tail,
      );
    }
  }
  const outDir = options.outDir ?? resolve(inventory.dir, 'dist', 'artifacts');
  const result = await packageRelease(outputDir, outDir, sourceInfo(inventory.dir));
  progress(`packaged ${result.release}: ${result.files} files, ${result.bytes} bytes, artifact ${result.artifactBytes} bytes`);
  return result;
}
