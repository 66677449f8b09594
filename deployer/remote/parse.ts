/** Parsers for the output of the remote command builders. */
import type { ManifestFile } from '../build/manifest.ts';

/**
 * Parse `hashTree` output into manifest entries sorted by path (byte order).
 * @throws Error when the output is not in the expected shape.
 */
export function parseHashTree(stdout: string): ManifestFile[] {
  const [statPart, hashPart] = stdout.split(/^--$/m);
  if (hashPart === undefined) throw new Error('unexpected hashTree output (no separator)');
  const hashes = new Map<string, string>();
  for (const line of hashPart.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *]\.\/(.*)$/.exec(line);
    if (m) hashes.set(m[2]!, m[1]!);
  }
  const files: ManifestFile[] = [];
  for (const line of statPart!.split('\n')) {
    if (!line) continue;
    const [path, size, mode] = line.split('\t');
    if (path === undefined || size === undefined || mode === undefined) throw new Error(`unexpected hashTree line: ${line}`);
    files.push({ path, size: Number(size), mode: mode.padStart(3, '0'), sha256: hashes.get(path) ?? '' });
  }
  return files.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}

/** Differences between the files a manifest lists and the files found on an instance. */
export interface TreeDiff {
  missing: string[];
  changed: { path: string; expected: string; actual: string; what: 'content' | 'mode' | 'size' }[];
  added: string[];
}

/**
 * Compare expected manifest files with actual ones (e.g. hashed on the host).
 * @returns missing, changed (content, size or mode) and added paths; all empty when equal.
 */
export function diffTree(expected: ManifestFile[], actual: ManifestFile[]): TreeDiff {
  const have = new Map(actual.map((f) => [f.path, f]));
  const diff: TreeDiff = { missing: [], changed: [], added: [] };
  for (const f of expected) {
    const a = have.get(f.path);
    if (!a) diff.missing.push(f.path);
    else {
      if (a.sha256 !== f.sha256) diff.changed.push({ path: f.path, expected: f.sha256, actual: a.sha256, what: 'content' });
      else if (a.mode !== f.mode) diff.changed.push({ path: f.path, expected: f.mode, actual: a.mode, what: 'mode' });
      have.delete(f.path);
    }
  }
  diff.added = [...have.keys()].sort();
  return diff;
}

/** True when a TreeDiff has no difference. */
export function isCleanDiff(diff: TreeDiff): boolean {
  return diff.missing.length === 0 && diff.changed.length === 0 && diff.added.length === 0;
}

/** What `describeCurrent` found. */
export interface CurrentLink {
  /** `link`: a symlink; `notlink`: a real file or directory; `none`: nothing there. */
  kind: 'link' | 'notlink' | 'none';
  /** The symlink's target as written (relative or absolute), null unless kind is `link`. */
  target: string | null;
  /** True when `current` resolves to a directory. */
  dir: boolean;
  /** True when that directory holds a manifest.json. */
  manifest: boolean;
}

/** Parse `describeCurrent` output. @throws Error when the first line is not one of its forms. */
export function parseCurrentLink(stdout: string): CurrentLink {
  const lines = stdout.split('\n').filter((l) => l !== '');
  const first = lines[0] ?? '';
  let kind: CurrentLink['kind'];
  let target: string | null = null;
  if (first.startsWith('link\t')) {
    kind = 'link';
    target = first.slice(5);
  } else if (first === 'notlink' || first === 'none') kind = first;
  else throw new Error(`unexpected describeCurrent output: ${first}`);
  return { kind, target, dir: lines.includes('dir'), manifest: lines.includes('manifest') };
}

/**
 * Split output made of `##name` header lines into sections (name -> text after the header, up to
 * the next header). Lines before the first header are dropped.
 */
export function splitSections(stdout: string): Map<string, string> {
  const sections = new Map<string, string>();
  let name: string | null = null;
  let lines: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /^##([a-z]+)$/.exec(line);
    if (m) {
      if (name !== null) sections.set(name, lines.join('\n'));
      name = m[1]!;
      lines = [];
    } else if (name !== null) lines.push(line);
  }
  if (name !== null) sections.set(name, lines.join('\n'));
  return sections;
}

/** Parse `treeDigest` output. @throws Error when it is not in that shape. */
export function parseTreeDigest(stdout: string): { tree: string; manifestSha: string | null } {
  const tree = /^tree ([0-9a-f]{64})$/m.exec(stdout)?.[1];
  const man = /^manifest (\S+)$/m.exec(stdout)?.[1];
  if (!tree || !man) throw new Error(`unexpected treeDigest output: ${stdout.slice(0, 200)}`);
  return { tree, manifestSha: man === '-' ? null : man };
}
