#!/usr/bin/env node
// Compiles the lockstep CLI and the proxy's cluster worker from their TypeScript sources into
// build/ (gitignored), one esbuild bundle per entry point; packages in node_modules stay external
// imports. npm's `prepare` runs this, so `npm ci` leaves a runnable CLI; `npm run compile` runs
// it by hand. bin/lockstep.mjs calls staleInput() first and compiles again when a source changed
// after the last compile, so an edited checkout never runs old code.
//
//   build/lockstep.mjs        deployer/cli/index.ts and everything it imports (deployer, config, proxy)
//   build/proxy-worker.mjs    proxy/worker.ts: forked by proxy/cluster.ts in worker mode
//   build/inputs.json         the source files the bundles were made from, for staleInput()
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
export const buildDir = join(root, 'build');
const inputsFile = join(buildDir, 'inputs.json');

/** The entry points: output name (without `.mjs`) -> source. */
const entryPoints = { lockstep: 'deployer/cli/index.ts', 'proxy-worker': 'proxy/worker.ts' };

/**
 * Why build/ cannot be run as it is, without compiling anything: a missing output, or a source
 * file (or this script, or package.json) changed after the last compile.
 * @returns a short reason naming the file, or null when build/ is up to date.
 */
export function staleInput() {
  let recorded;
  try {
    recorded = JSON.parse(readFileSync(inputsFile, 'utf8'));
  } catch {
    return 'build/ has not been compiled';
  }
  for (const out of recorded.outputs) {
    try {
      statSync(join(root, out));
    } catch {
      return `${out} is missing`;
    }
  }
  for (const file of recorded.inputs) {
    let mtimeMs;
    try {
      ({ mtimeMs } = statSync(join(root, file)));
    } catch {
      return `${file} is gone`;
    }
    if (mtimeMs > recorded.startedAt) return `${file} changed`;
  }
  return null;
}

/**
 * Compile every entry point into build/. Each file is written under a temporary name and renamed
 * into place, so a process starting meanwhile (or a second compile running at the same time)
 * never loads a half-written bundle.
 * @returns the output files, relative to the repository.
 */
export async function compile() {
  const { build, stop } = await import('esbuild');
  // Taken before reading any source: a file saved during the compile counts as changed.
  const startedAt = Date.now();
  const result = await build({
    absWorkingDir: root,
    entryPoints,
    outdir: buildDir,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20.19',
    sourcemap: 'linked',
    metafile: true,
    write: false,
    logLevel: 'warning',
  });
  // esbuild's service process is not needed any more (the CLI may run for hours as the proxy).
  await stop();
  mkdirSync(buildDir, { recursive: true });
  const outputs = [];
  for (const file of result.outputFiles) {
    const tmp = `${file.path}.tmp-${process.pid}`;
    writeFileSync(tmp, file.contents);
    renameSync(tmp, file.path);
    outputs.push(relative(root, file.path));
  }
  const inputs = [...Object.keys(result.metafile.inputs), 'compile.mjs', 'package.json'];
  const tmp = `${inputsFile}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify({ startedAt, outputs, inputs }, null, 2) + '\n');
  renameSync(tmp, inputsFile);
  return outputs;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outputs = await compile();
  console.log(`compiled ${outputs.filter((f) => f.endsWith('.mjs')).join(', ')}`);
}
