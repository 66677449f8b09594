#!/usr/bin/env node
// The lockstep CLI entry point: runs the compiled bundle build/lockstep.mjs, which `npm ci` made
// (npm's `prepare` runs compile.mjs). When a source file changed after that compile, or build/ is
// missing, it compiles first (about a second, one line on stderr), so it never runs old code.
import { compile, staleInput } from '../compile.mjs';

const stale = staleInput();
if (stale !== null) {
  try {
    await compile();
  } catch (err) {
    process.stderr.write(`lockstep: ${stale} and compiling it again failed (npm run compile): ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  }
  process.stderr.write(`lockstep: compiled build/ first (${stale})\n`);
}
process.setSourceMapsEnabled(true);
const { main } = await import('../build/lockstep.mjs');
process.exitCode = await main(process.argv.slice(2));
