#!/usr/bin/env node
// Build the analysis app into one self-contained release directory (default app/dist):
//   server/index.mjs   the Fastify backend, bundled by esbuild with every dependency inlined,
//                      so an instance needs no `npm install`
//   public/            the Vite + React frontend, served at /
//   bin/service        start|stop|restart|status (the app contract)
//   public/sample-data/ demo input: the generated .csv and .zip, served at /sample-data/
// The output is deterministic: same source and lockfile -> byte-identical files. Nothing embeds
// a time or an absolute path, file modes are fixed (644, 755 for bin/), and the output
// directory is emptied first so no stale file survives.
//
// Usage: node app/build.mjs [--out DIR]
import { chmod, cp, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as esbuild } from 'esbuild';
import { build as viteBuild } from 'vite';
import react from '@vitejs/plugin-react';

// A production build whatever the caller's environment says (vitest sets NODE_ENV=test, which
// would make React's JSX transform embed absolute source paths).
process.env.NODE_ENV = 'production';

const appDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(appDir, '..');

function parseArgs(argv) {
  let out = join(appDir, 'dist');
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out' && argv[i + 1]) out = resolve(argv[++i]);
    else if (argv[i].startsWith('--out=')) out = resolve(argv[i].slice(6));
    else {
      console.error(`usage: node app/build.mjs [--out DIR] (unknown argument ${argv[i]})`);
      process.exit(2);
    }
  }
  return { out };
}

async function buildServer(out) {
  await esbuild({
    absWorkingDir: repoRoot,
    entryPoints: ['app/server/index.ts'],
    outfile: join(out, 'server', 'index.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Some bundled CommonJS dependencies call require() for Node built-ins.
    banner: {
      js: "import { createRequire as __lockstepCreateRequire } from 'node:module';\nconst require = __lockstepCreateRequire(import.meta.url);",
    },
    legalComments: 'eof',
    charset: 'utf8',
    sourcemap: false,
    minify: false,
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': '"production"' },
  });
}

async function buildWeb(out) {
  await viteBuild({
    configFile: false,
    root: join(appDir, 'web'),
    base: '/',
    mode: 'production',
    logLevel: 'warn',
    plugins: [react()],
    build: {
      outDir: join(out, 'public'),
      emptyOutDir: true,
      assetsDir: 'assets',
      sourcemap: false,
      reportCompressedSize: false,
      copyPublicDir: false,
    },
  });
}

async function walk(dir) {
  const found = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) found.push(p, ...(await walk(p)));
    else found.push(p);
  }
  return found;
}

async function fixModes(out) {
  for (const p of await walk(out)) {
    const st = await stat(p);
    const rel = relative(out, p).split('\\').join('/');
    await chmod(p, st.isDirectory() || rel.startsWith('bin/') ? 0o755 : 0o644);
  }
}

async function main() {
  const { out } = parseArgs(process.argv.slice(2));
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  await buildServer(out);
  await buildWeb(out);
  await mkdir(join(out, 'bin'), { recursive: true });
  await cp(join(appDir, 'bin', 'service'), join(out, 'bin', 'service'));
  if (existsSync(join(appDir, 'sample-data'))) {
    await cp(join(appDir, 'sample-data'), join(out, 'public', 'sample-data'), {
      recursive: true,
      // Only the data files; the generator and its writer are source, not part of a release.
      filter: (src) => !/\.[a-z]+$/i.test(src) || /\.(csv|zip)$/i.test(src),
    });
  }
  await fixModes(out);
  console.log(`app built into ${relative(process.cwd(), out) || '.'}`);
}

main().catch((err) => {
  console.error(err?.stack ?? String(err));
  process.exit(1);
});
