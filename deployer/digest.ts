import { createHash } from 'node:crypto';
import type { ManifestFile } from './manifest-types.ts';

/** sha256 over `<sha256> <mode> <size> <path>\n` lines sorted by path (docs/ARCHITECTURE.md). */
export function computeDigest(files: ManifestFile[]): string {
  const sorted = [...files].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  const h = createHash('sha256');
  for (const f of sorted) h.update(`${f.sha256} ${f.mode} ${f.size} ${f.path}\n`);
  return h.digest('hex');
}
