/** One file of a release, as recorded in its manifest. */
export interface ManifestFile {
  /** Path relative to the release root, `/`-separated. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** Permission bits in octal, e.g. "644" or "755". */
  mode: string;
  /** Lowercase hex sha256 of the content. */
  sha256: string;
}

/**
 * The manifest of a release. Written beside the artifact as `<release id>.manifest.json`
 * and into the release directory on every instance as `manifest.json` (which is not part
 * of its own `files`). `digest` is the identity of the release (see `computeDigest`).
 */
export interface Manifest {
  schema: 1;
  release: string;
  digest: string;
  source: { revision: string | null; dirty: boolean; time: string; pinned: boolean };
  builtAt: string;
  artifact: { file: string; sha256: string; bytes: number };
  files: ManifestFile[];
}

/** Name of the manifest file inside a release directory. */
export const MANIFEST_FILE = 'manifest.json';
