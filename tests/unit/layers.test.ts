/**
 * The import rules of docs/ARCHITECTURE.md, checked on the source so they stay true:
 * `config/` and `verdict/` are the bottom layer (import neither program), `proxy/` never imports `deployer/`,
 * `deployer/` reaches the proxy program only through its entry point `proxy/command.ts`, and
 * there is no import cycle among the three (type-only imports included).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');
const ROOMS = ['config', 'verdict', 'deployer', 'proxy'];

function sourceFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : /\.tsx?$/.test(e.name) ? [join(dir, e.name)] : [],
  );
}

/** Relative imports of one file (static, type-only, re-exports and dynamic), as repo paths. */
export function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm)) {
    out.push(relative(root, resolve(root, dirname(file), m[1]!)));
  }
  return out;
}

const files = ROOMS.flatMap(sourceFiles);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

describe('layers', () => {
  it('finds the source files and their imports (the check itself can fail)', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(graph.get('deployer/cli/proxy.ts')).toContain('proxy/command.ts');
  });

  it('config/ imports neither deployer/ nor proxy/ nor app/', () => {
    const bad = [...graph].flatMap(([f, deps]) => (f.startsWith('config/') ? deps.filter((d) => !d.startsWith('config/')).map((d) => `${f} -> ${d}`) : []));
    expect(bad).toEqual([]);
  });

  it('verdict/ (the fleet verdict both programs share) imports nothing outside itself', () => {
    const bad = [...graph].flatMap(([f, deps]) => (f.startsWith('verdict/') ? deps.filter((d) => !d.startsWith('verdict/')).map((d) => `${f} -> ${d}`) : []));
    expect(bad).toEqual([]);
    expect(files.some((f) => f.startsWith('verdict/'))).toBe(true);
  });

  it('proxy/ never imports deployer/', () => {
    const bad = [...graph].flatMap(([f, deps]) => (f.startsWith('proxy/') ? deps.filter((d) => d.startsWith('deployer/')).map((d) => `${f} -> ${d}`) : []));
    expect(bad).toEqual([]);
  });

  it('deployer/ reaches the proxy program only through proxy/command.ts', () => {
    const bad = [...graph].flatMap(([f, deps]) =>
      f.startsWith('deployer/') ? deps.filter((d) => d.startsWith('proxy/') && d !== 'proxy/command.ts').map((d) => `${f} -> ${d}`) : [],
    );
    expect(bad).toEqual([]);
  });

  it('has no import cycle, type-only imports included', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string): void => {
      state.set(f, 'open');
      stack.push(f);
      for (const d of graph.get(f) ?? []) {
        if (!graph.has(d)) continue;
        if (state.get(d) === 'open') cycles.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
        else if (!state.has(d)) visit(d);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of files) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  it('keeps every deployer/, proxy/ and config/ file to one concept of at most about 400 lines', () => {
    const long = files
      .map((f) => ({ f, lines: readFileSync(join(root, f), 'utf8').split('\n').length }))
      .filter(({ lines }) => lines > 420)
      .map(({ f, lines }) => `${f}: ${lines}`);
    expect(long).toEqual([]);
  });
});
