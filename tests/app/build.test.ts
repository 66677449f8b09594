/** The app build: layout of the release directory and byte-for-byte determinism. */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, hashTree, repoRoot, run, tempDir } from './support.ts';

let first: string;
let second: string;

beforeAll(async () => {
  first = await buildRelease();
  // The second build goes through the npm script, into a different directory.
  second = join(await tempDir('build2'), 'out');
  await run('npm', ['run', '--silent', 'app:build', '--', '--out', second], { cwd: repoRoot });
});

describe('npm run app:build', () => {
  it('writes the bundled server, the frontend and an executable bin/service', async () => {
    const files = [...(await hashTree(first)).keys()].sort();
    expect(files).toContain('server/index.mjs');
    expect(files).toContain('public/index.html');
    expect(files).toContain('bin/service');
    expect(files.some((f) => /^public\/assets\/index-[\w-]+\.js$/.test(f))).toBe(true);
    expect((await stat(join(first, 'bin', 'service'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(first, 'server', 'index.mjs'))).mode & 0o777).toBe(0o644);
  });

  it('bundles every dependency: the server imports nothing but Node built-ins', async () => {
    const code = await readFile(join(first, 'server', 'index.mjs'), 'utf8');
    const imports = [...code.matchAll(/^import\s[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
    expect(imports.length).toBeGreaterThan(0);
    for (const spec of imports) expect(spec).toMatch(/^node:/);
    expect(code).not.toMatch(/\brequire\(["'](?!node:)(fastify|@fastify|csv-parse|uuid|pino)/);
  });

  it('is deterministic: two builds into different directories are byte-identical, modes included', async () => {
    const a = await hashTree(first);
    const b = await hashTree(second);
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    for (const [path, hash] of a) expect(b.get(path), path).toBe(hash);
  });

  it('embeds no absolute path of the build machine', async () => {
    for (const path of (await hashTree(first)).keys()) {
      const text = await readFile(join(first, path), 'latin1');
      expect(text.includes(repoRoot), path).toBe(false);
      expect(text.includes(first), path).toBe(false);
    }
  });
});
