/**
 * End-to-end fixtures: real sshd hosts running the real app, the real proxy in front, and the
 * deployer driving them exactly as the CLI does.
 */
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { loadInventory, type Inventory } from '../../config/inventory.ts';
import { openFleet } from '../../deployer/fleet/fleet.ts';
import pino from 'pino';
import { startEngine, type RunningEngine } from '../../proxy/engine.ts';
import { startProxy, type RunningProxy } from '../../proxy/index.ts';
import { proxyConfigFromInventory, upstreamsFromInventory } from '../../proxy/inventory-config.ts';
import { freePort, startSshHosts, type SshFleet, type SshFleetOptions } from '../helpers/sshd.ts';
import type { Manifest } from '../../deployer/build/manifest.ts';

export const repoRoot = resolve(import.meta.dirname, '..', '..');

export interface E2eFleet {
  ssh: SshFleet;
  inventory: Inventory;
  proxy?: RunningProxy;
  /** With `engine: 'haproxy'`: the supervised HAProxy (then `proxy` is undefined). */
  engine?: RunningEngine;
  /** Where users connect, whichever engine runs. */
  proxyUrl?: string;
  stop(): Promise<void>;
}

/** The app section for the real analysis app, built into the fleet's own temp dir. */
export function realAppSection(buildDir: string): Record<string, unknown> {
  return {
    name: 'analysis',
    build: { command: `${JSON.stringify(process.execPath)} ${JSON.stringify(join(repoRoot, 'app/build.mjs'))} --out ${JSON.stringify(buildDir)}`, output: buildDir },
    service: { start: 'bin/service start', stop: 'bin/service stop', restart: 'bin/service restart' },
    shared_dirs: ['data', 'logs', 'run'],
    checks: { upload_paths: ['/api/upload', '/api/v1/data-analysis/upload'], upload_field: 'file', session_path: '/api/session', concurrent_sessions: 5 },
  };
}

/**
 * Start `count` sshd hosts on `baseAddress`+, write an inventory for the real app, and
 * (optionally) the real proxy in front on free loopback ports. `app` overrides keys of the real
 * app section; `umask` is the hosts' session umask (tests/helpers/sshd.ts).
 */
export async function startE2eFleet(
  count: number,
  baseAddress: string,
  options: {
    proxy?: boolean;
    deploy?: Record<string, unknown>;
    app?: Record<string, unknown>;
    umask?: string;
    /** `haproxy`: run the HAProxy engine (proxy/engine.ts) instead of the in-process Lockstep proxy. */
    engine?: 'lockstep' | 'haproxy';
    /** Loopback address of the proxy and its admin API (ports picked by the kernel). Default 127.0.0.1. */
    proxyAddress?: string;
    /** Overrides of the inventory's proxy section. */
    proxySection?: Record<string, unknown>;
    /** Inventory `ssh` keys (keepalive, timeouts). */
    sshInventory?: Record<string, unknown>;
    /** sshd options of the hosts (extra sshd_config lines, SFTP subsystem command). */
    sshd?: Pick<SshFleetOptions, 'sshdConfig' | 'sftpCommand'>;
    /** Logger of the in-process proxy (default silent), e.g. to search its log lines. */
    proxyLogger?: pino.Logger;
  } = {},
): Promise<E2eFleet> {
  const ssh = await startSshHosts(count, { baseAddress, umask: options.umask, ...options.sshd });
  const proxyAddress = options.proxyAddress ?? '127.0.0.1';
  const proxyPort = await freePort(proxyAddress);
  const adminPort = await freePort(proxyAddress);
  const haproxy = options.engine === 'haproxy';
  const file = ssh.writeInventory({
    app: { ...realAppSection(join(ssh.dir, 'app-build')), ...options.app },
    // Stability window off by default here (it adds its length to every batch of every e2e
    // deploy); the crash-loop case turns it on (tests/e2e/worst-day-ssh.test.ts).
    deploy: { activation_timeout_ms: 20000, drain_timeout_ms: 5000, stability_window_ms: 0, ...options.deploy },
    ...(options.sshInventory ? { ssh: options.sshInventory } : {}),
    proxy: {
      listen: `${proxyAddress}:${proxyPort}`,
      admin_listen: `${proxyAddress}:${adminPort}`,
      health_check: { interval_ms: 200, timeout_ms: 1000, rise: 1, fall: 2 },
      ...(haproxy ? { engine: 'haproxy', haproxy: { run_dir: join(ssh.dir, 'haproxy') } } : {}),
      ...options.proxySection,
    },
  });
  const inventory = loadInventory(file);
  // Admin token and affinity secret come from files the proxy creates in the fleet's temp dir
  // (inventory proxy.admin_token_file), the same ones the deployer's admin client reads.
  const engine =
    options.proxy !== false && haproxy ? await startEngine(inventory, { env: process.env, logger: pino({ level: 'silent' }), workers: 1 }) : undefined;
  const proxy =
    options.proxy === false || haproxy
      ? undefined
      : await startProxy(proxyConfigFromInventory(inventory, process.env, options.proxyLogger), { reloadSource: () => upstreamsFromInventory(loadInventory(file)) });
  return {
    ssh,
    inventory,
    proxy,
    engine,
    proxyUrl: proxy?.url ?? engine?.url,
    async stop() {
      await proxy?.close();
      await engine?.close();
      const fleet = openFleet(inventory);
      await fleet.each((o) => o.stopApp()).catch(() => {});
      await fleet.close();
      // Belt and braces: no app process of this fleet may outlive it (a leftover would hold
      // its address and port and answer for the next run's instances).
      spawnSync('pkill', ['-f', `${ssh.dir}/`]);
      await ssh.stop();
    },
  };
}

/** Read a host's `current` manifest straight from its disk (not through the deployer). */
export function manifestOnDisk(deployTo: string): Manifest {
  return JSON.parse(readFileSync(join(deployTo, 'current', 'manifest.json'), 'utf8')) as Manifest;
}

/** Where `current` points on a host's disk. */
export function currentOnDisk(deployTo: string): string | null {
  try {
    return readlinkSync(join(deployTo, 'current'));
  } catch {
    return null;
  }
}

/** GET /version of an app directly. */
export async function versionOf(url: string): Promise<{ release: string; digest: string; instance: string }> {
  const res = await fetch(`${url}/version`);
  return (await res.json()) as { release: string; digest: string; instance: string };
}

/**
 * A release variant for tests: `good` adds a marker file and a hashed module of its own that its
 * index.html references (so two releases' pages need different assets, as real builds do);
 * `broken` serves 500 on every path; `crashes` is the real app that exits (code 1) 1 s after its
 * first health check answer (a crash loop without a supervisor: it answers health once, then dies).
 */
export type ReleaseKind = 'good' | 'broken' | 'crashes';

/** Add `public/assets/variant-<sha8>.js` (content `tag`) and reference it from `public/index.html`. */
export function addHashedModule(dir: string, tag: string): void {
  const body = `export const variant = ${JSON.stringify(tag)};\n`;
  const name = `variant-${createHash('sha256').update(body).digest('hex').slice(0, 8)}.js`;
  writeFileSync(join(dir, 'public', 'assets', name), body);
  const index = join(dir, 'public', 'index.html');
  writeFileSync(index, readFileSync(index, 'utf8').replace('</head>', `  <script type="module" crossorigin src="/assets/${name}"></script>\n  </head>`));
}

/**
 * Build the real app once, then package variants of it into the fleet's artifacts dir, each
 * with its own digest and release id (minute = its index). @returns release ids, in order.
 */
export async function makeReleases(inventory: Inventory, kinds: ReleaseKind[]): Promise<string[]> {
  const { cpSync, mkdtempSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { execFileSync } = await import('node:child_process');
  const { packageRelease } = await import('../../deployer/build/build.ts');
  const { artifactsDir } = await import('../../deployer/build/release-source.ts');
  const base = mkdtempSync(join(tmpdir(), 'lockstep-rel-'));
  const built = join(base, 'built');
  execFileSync(process.execPath, [join(repoRoot, 'app/build.mjs'), '--out', built]);
  const ids: string[] = [];
  for (const [n, kind] of kinds.entries()) {
    const dir = join(base, `v${n}`);
    cpSync(built, dir, { recursive: true });
    writeFileSync(join(dir, 'public', 'variant.txt'), `variant ${n}\n`);
    if (kind === 'good') addHashedModule(dir, `variant ${n}`);
    if (kind === 'broken') {
      // Starts and listens, but its health check always fails: it must never take traffic.
      writeFileSync(
        join(dir, 'server', 'index.mjs'),
        `import http from 'node:http';\n// variant ${n}\nhttp.createServer((q, r) => { r.statusCode = 500; r.end('broken release'); }).listen(Number(process.env.PORT), process.env.HOST);\n`,
      );
    }
    if (kind === 'crashes') {
      // The entry keeps its name (bin/service finds its process by it) and loads the real server.
      const { renameSync } = await import('node:fs');
      renameSync(join(dir, 'server', 'index.mjs'), join(dir, 'server', 'real.mjs'));
      writeFileSync(
        join(dir, 'server', 'index.mjs'),
        [
          `import http from 'node:http';`,
          `// variant ${n}: exits 1 s after its first ${inventory.app.health_path} answer`,
          `const emit = http.Server.prototype.emit;`,
          `let armed = false;`,
          `http.Server.prototype.emit = function (event, req, ...rest) {`,
          `  if (event === 'request' && !armed && req.url.startsWith(${JSON.stringify(inventory.app.health_path)})) {`,
          `    armed = true;`,
          `    setTimeout(() => { console.error('crash-loop variant: exiting'); process.exit(1); }, 1000);`,
          `  }`,
          `  return emit.call(this, event, req, ...rest);`,
          `};`,
          `await import('./real.mjs');`,
          '',
        ].join('\n'),
      );
    }
    const minute = String(10 + n).padStart(2, '0');
    const r = await packageRelease(dir, artifactsDir(inventory), { revision: null, dirty: false, time: `2026-11-30T09:${minute}:00Z`, pinned: true });
    ids.push(r.release);
  }
  return ids;
}

/** What a CLI run in a child process printed and how it ended. */
export interface CliRun {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * Run the compiled CLI (`bin/lockstep.mjs`) with `args` against `inventoryFile` in a child
 * process, asynchronously (a proxy started by the test in this process keeps serving), killed
 * with SIGKILL after `timeoutMs` (ms; then `signal` is 'SIGKILL'). Never rejects.
 */
export function runCliAsync(inventoryFile: string, args: string[], timeoutMs = 180_000): Promise<CliRun> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(repoRoot, 'bin/lockstep.mjs'), ...args, '--inventory', inventoryFile], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status, signal) => done({ status, signal, stdout, stderr }));
  });
}
