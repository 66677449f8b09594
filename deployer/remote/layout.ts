/**
 * The Capistrano-style layout of one instance (see DESIGN.md):
 * releases/<id>, current -> releases/<id>, shared/, artifacts/<digest>.tar.gz, assets/, .lockstep/.
 */
import { posix } from 'node:path';

export interface Layout {
  root: string;
  releases: string;
  current: string;
  shared: string;
  artifacts: string;
  /** Asset store: hashed frontend assets of every release in the retention window (remote/asset-store.ts). */
  assets: string;
  meta: string;
  lock: string;
  history: string;
}

/** Absolute paths of the layout under `deployTo` (an absolute POSIX path). */
export function layoutOf(deployTo: string): Layout {
  const root = posix.normalize(deployTo).replace(/\/+$/, '') || '/';
  return {
    root,
    releases: `${root}/releases`,
    current: `${root}/current`,
    shared: `${root}/shared`,
    artifacts: `${root}/artifacts`,
    assets: `${root}/assets`,
    meta: `${root}/.lockstep`,
    lock: `${root}/.lockstep/lock`,
    history: `${root}/.lockstep/history.jsonl`,
  };
}

/** Release ids are `<YYYYMMDDTHHMMZ>-<8 hex>`; checked before any id reaches a shell command. */
export const RELEASE_ID = /^[0-9]{8}T[0-9]{4}Z-[0-9a-f]{8}$/;

/** Path of a release directory. @throws Error when `id` is not a release id. */
export function releaseDir(layout: Layout, id: string): string {
  if (!RELEASE_ID.test(id)) throw new Error(`not a release id: ${id}`);
  return `${layout.releases}/${id}`;
}

/** Path of an uploaded artifact, named by its digest. @throws Error on a non-hex digest. */
export function artifactPath(layout: Layout, digest: string): string {
  if (!/^[0-9a-f]{64}$/.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  return `${layout.artifacts}/${digest}.tar.gz`;
}
