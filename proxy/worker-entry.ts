/**
 * Where a cluster worker's code is (cluster.ts forks it). The proxy runs either compiled, inside
 * the bundle build/lockstep.mjs that compile.mjs makes, with the worker compiled beside it as
 * build/proxy-worker.mjs; or from its TypeScript sources (tests, benchmarks: this module's URL
 * then ends in `.ts`), with worker.ts in this folder run through tsx's loader.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * The worker's entry file and the node options it needs.
 * @param moduleUrl the running module's URL: this file's own, or the bundle it was compiled into.
 * @returns `exec` and `execArgv` for cluster.setupPrimary.
 * @throws Error naming the file when the compiled worker is missing beside the bundle.
 */
export function workerEntry(moduleUrl: string = import.meta.url): { exec: string; execArgv: string[] } {
  if (new URL(moduleUrl).pathname.endsWith('.ts')) {
    // An absolute loader URL works from any cwd.
    const tsx = createRequire(moduleUrl).resolve('tsx/package.json');
    return {
      exec: fileURLToPath(new URL('./worker.ts', moduleUrl)),
      execArgv: ['--import', pathToFileURL(join(dirname(tsx), 'dist/loader.mjs')).href],
    };
  }
  const exec = fileURLToPath(new URL('./proxy-worker.mjs', moduleUrl));
  if (!existsSync(exec)) throw new Error(`proxy worker ${exec} is missing: run \`npm run compile\``);
  // Stack traces name the TypeScript sources, as they did under tsx.
  return { exec, execArgv: ['--enable-source-maps'] };
}
