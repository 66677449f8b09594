/**
 * Every package the code imports is declared in package.json, so nothing works only because npm
 * hoisted another package's copy (ssh2 once did, through node-ssh). The compiled CLI and proxy
 * (compile.mjs) keep packages as external imports: what config/, deployer/, proxy/ and bin/
 * import at run time must be a `dependency`, not only a `devDependency`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const SCANNED = ['config', 'deployer', 'proxy', 'app/server', 'app/web', 'app/sample-data', 'app/build.mjs', 'bin', 'bench', 'tests', 'compile.mjs', 'vitest.config.ts'];
/** Rooms whose code runs in the compiled CLI and proxy. */
const RUNTIME = ['config/', 'deployer/', 'proxy/', 'bin/'];

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

function sourceFiles(path: string): string[] {
  if (/\.(?:[cm]?[jt]s|tsx)$/.test(path)) return [path];
  return readdirSync(join(root, path), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (['node_modules', 'dist'].includes(e.name) ? [] : sourceFiles(join(path, e.name))) : /\.(?:[cm]?[jt]s|tsx)$/.test(e.name) ? [join(path, e.name)] : [],
  );
}

interface BareImport {
  file: string;
  /** The package name: `zx` for `zx/core`, `@fastify/cookie` for `@fastify/cookie/x`. */
  name: string;
  typeOnly: boolean;
}

const isBare = (spec: string): boolean => !spec.startsWith('.') && !spec.startsWith('/') && !spec.startsWith('node:') && !builtinModules.includes(spec.split('/')[0]!);
const packageName = (spec: string): string => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');

/**
 * The bare imports of one file: static imports and re-exports (type-only marked), side-effect
 * imports, dynamic `import()`, `require()`, and loaders passed as `'--import', 'pkg'`.
 */
export function bareImports(file: string, text = readFileSync(join(root, file), 'utf8')): BareImport[] {
  const out: BareImport[] = [];
  const add = (spec: string, typeOnly: boolean): void => {
    if (isBare(spec)) out.push({ file, name: packageName(spec), typeOnly });
  };
  for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/gm)) add(m[2]!, m[1] !== undefined);
  for (const m of text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)) add(m[1]!, false);
  for (const m of text.matchAll(/\b(?:import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) add(m[1]!, false);
  for (const m of text.matchAll(/['"]--import['"]\s*,\s*['"]([^'"]+)['"]/g)) add(m[1]!, false);
  return out;
}

// This file is left out: its own examples below are not imports.
const imports = SCANNED.flatMap(sourceFiles)
  .filter((f) => f !== 'tests/unit/dependencies.test.ts')
  .flatMap((f) => bareImports(f));
const declared = (name: string): boolean => name in pkg.dependencies || name in pkg.devDependencies;

describe('declared dependencies', () => {
  it('reads every kind of import (the check itself can fail)', () => {
    const text = [
      "import { $ } from 'zx/core';",
      "import type { Client } from 'ssh2';",
      "export { x } from '@scope/pkg/sub';",
      "import {\n  a,\n  b,\n} from 'multi-line';",
      "import 'side-effect';",
      "const m = await import('dynamic');",
      "spawn(process.execPath, ['--import', 'tsx', file]);",
      "import { readFile } from 'node:fs';",
      "import { join } from 'path';",
      "import { local } from './local.ts';",
    ].join('\n');
    expect(bareImports('x.ts', text).map((i) => `${i.name}${i.typeOnly ? ' (type)' : ''}`)).toEqual([
      'zx',
      'ssh2 (type)',
      '@scope/pkg',
      'multi-line',
      'side-effect',
      'dynamic',
      'tsx',
    ]);
    expect(imports.length).toBeGreaterThan(100);
    expect(imports).toContainEqual({ file: 'deployer/transport/host-key-probe.ts', name: 'ssh2', typeOnly: false });
  });

  it('declares every package imported anywhere (node: builtins excluded)', () => {
    const missing = imports.filter((i) => !declared(i.name) && !(i.typeOnly && declared(`@types/${i.name}`)));
    expect(missing.map((i) => `${i.file}: ${i.name}`)).toEqual([]);
  });

  it('has what the compiled CLI and proxy import at run time in dependencies', () => {
    const dev = imports.filter((i) => RUNTIME.some((r) => i.file.startsWith(r)) && !i.typeOnly && !(i.name in pkg.dependencies));
    expect(dev.map((i) => `${i.file}: ${i.name}`)).toEqual([]);
  });
});
