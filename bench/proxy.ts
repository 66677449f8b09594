/**
 * Proxy benchmark: wrk against three upstreams on loopback, in one run, through
 *   direct (one upstream), the Lockstep proxy, nginx, HAProxy (both with upstream keep-alive) and
 *   Lockstep-managed HAProxy (`proxy.engine: haproxy`: the config Lockstep renders, supervised).
 * Prints requests/s, p50 and p99 per target and the Lockstep/nginx ratio; then the proxy's RSS
 * before and after RSS_REQUESTS requests (default 1,000,000; 0 skips that phase).
 *
 *   node --import tsx bench/proxy.ts                  # 10 s per target
 *   DURATION=5 CONNECTIONS=64 WORKERS=2 ENGINE=undici node --import tsx bench/proxy.ts
 *
 * WORKERS (default 2) adds a run of the proxy in worker mode; ENGINE picks undici (default) or
 * http-proxy-3 for both Lockstep runs.
 *
 * ACCESS_LOG_RATES=0.1,1 adds a single-process Lockstep target per rate with its access log on
 * (proxy/access-log.ts); ONLY_LOCKSTEP=1 leaves nginx and HAProxy out.
 *
 * Needs wrk, nginx and haproxy (apt-get install wrk nginx haproxy); a missing one is skipped.
 * Everything listens on 127.0.0.1 and is stopped at the end. Bounded: each wrk run has a duration.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BODY = Buffer.from(JSON.stringify({ ok: true, text: 'x'.repeat(100) }));

// --- child modes -----------------------------------------------------------------------------

async function runUpstream(port: number): Promise<void> {
  const server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(200, { 'content-length': 0 });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BODY.length });
    res.end(BODY);
  });
  server.keepAliveTimeout = 65_000;
  server.listen(port, '127.0.0.1', () => process.send?.('ready'));
}

async function runLockstep(port: number, workers: number, upstreamPorts: number[], accessLog: { path: string; sampleRate: number } | null = null): Promise<void> {
  const { startProxy } = await import('../proxy/index.ts');
  const proxy = await startProxy(
    {
    listen: { host: '127.0.0.1', port },
    adminListen: { host: '127.0.0.1', port: 0 },
    adminToken: 'bench-admin-token-0123456789',
    affinitySecret: 'bench-affinity-secret-0123456789',
    upstreams: upstreamPorts.map((p, i) => ({ name: `u${i + 1}`, url: `http://127.0.0.1:${p}` })),
    engine: (process.env.ENGINE as 'undici' | 'http-proxy-3' | undefined) ?? 'undici',
    accessLog,
    },
    { workers },
  );
  process.send?.('ready');
  process.on('SIGTERM', () => void proxy.close().then(() => process.exit(0)));
}

/**
 * Lockstep-managed HAProxy: the HAProxy engine (proxy/engine.ts) for an inventory of the three
 * upstreams, i.e. the rendered config with health checks, cookie stickiness, stats socket and
 * server-state file, supervised by this process (its CPU counts with HAProxy's).
 */
async function runManagedHaproxy(port: number, upstreamPorts: number[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-hx-'));
  const file = join(dir, 'inventory.yaml');
  const instances = upstreamPorts.map((p, i) => `  - {name: u${i + 1}, transport: local, deploy_to: u${i + 1}, app_port: ${p}}`).join('\n');
  writeFileSync(
    file,
    `app:\n  build: {command: "true", output: out}\n  service: {start: a, stop: b, restart: c}\nproxy:\n  engine: haproxy\n  listen: 127.0.0.1:${port}\n  admin_listen: 127.0.0.1:0\ninstances:\n${instances}\n`,
  );
  const { loadInventory } = await import('../config/inventory.ts');
  const { startEngine } = await import('../proxy/engine.ts');
  const pino = (await import('pino')).default;
  const engine = await startEngine(loadInventory(file), { env: {}, logger: pino({ level: 'warn' }), workers: 1 });
  process.send?.('ready');
  process.on('SIGTERM', () => void engine.close().then(() => process.exit(0)));
}

// --- orchestration ---------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const children: ChildProcess[] = [];

function startNode(args: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', import.meta.filename, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`${args[0]} exited ${code}`)));
  });
}

function startDaemon(cmd: string, args: string[]): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}

async function waitForHttp(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      http.get(url, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      }).on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

interface WrkResult {
  rps: number;
  p50: string;
  p99: string;
  requests: number;
  errors: string;
}

function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? '?';
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? '?';
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
  const errs = /Socket errors: (.*)/.exec(out)?.[1];
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
  return { rps, p50, p99, requests, errors: [errs, non2xx ? `non-2xx ${non2xx}` : ''].filter(Boolean).join('; ') || '-' };
}

function wrk(url: string, seconds: number, connections: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--latency', url], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(parseWrk(out)) : reject(new Error(`wrk exited ${code}: ${out}`))));
  });
}

/** CPU time (user + system) of a process and all its descendants, s. Linux /proc only. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      for (const child of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').split(' ').filter(Boolean)) {
        ticks += cpuSeconds(Number(child)) * 100;
      }
    }
    return ticks / 100;
  } catch {
    return NaN;
  }
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function nginxConfig(dir: string, port: number, upstreams: number[]): string {
  const file = join(dir, 'nginx.conf');
  writeFileSync(
    file,
    `worker_processes auto;
error_log ${dir}/nginx-error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  upstream app { ${upstreams.map((p) => `server 127.0.0.1:${p};`).join(' ')} keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`,
  );
  return file;
}

function haproxyConfig(dir: string, port: number, upstreams: number[]): string {
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(
    file,
    `global
  maxconn 4000
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend app
backend app
  balance roundrobin
${upstreams.map((p, i) => `  server u${i + 1} 127.0.0.1:${p}`).join('\n')}
`,
  );
  return file;
}

async function main(): Promise<void> {
  const seconds = Number(process.env.DURATION ?? 10);
  const connections = Number(process.env.CONNECTIONS ?? 64);
  const rssRequests = Number(process.env.RSS_REQUESTS ?? 1_000_000);
  if (!has('wrk')) throw new Error('wrk is not installed: apt-get install wrk');
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-'));
  const upstreamPorts = [await freePort(), await freePort(), await freePort()];

  const ups = await Promise.all(upstreamPorts.map((p) => startNode(['upstream', String(p)])));
  const targets: Array<{ name: string; url: string; pid?: number }> = [
    { name: 'direct (one upstream)', url: `http://127.0.0.1:${upstreamPorts[0]}/`, pid: ups[0]!.pid },
  ];
  const lockPort = await freePort();
  const lock = await startNode(['lockstep', String(lockPort), '1', ...upstreamPorts.map(String)]);
  targets.push({ name: 'lockstep', url: `http://127.0.0.1:${lockPort}/`, pid: lock.pid });
  const workers = Number(process.env.WORKERS ?? 2);
  if (workers > 1) {
    const port = await freePort();
    const cl = await startNode(['lockstep', String(port), String(workers), ...upstreamPorts.map(String)]);
    targets.push({ name: `lockstep, ${workers} workers`, url: `http://127.0.0.1:${port}/`, pid: cl.pid });
  }
  // ACCESS_LOG_RATES=0.1,1: one more single-process Lockstep target per rate, with its access log on.
  for (const rate of (process.env.ACCESS_LOG_RATES ?? '').split(',').filter(Boolean)) {
    const port = await freePort();
    const al = await startNode(['lockstep-log', String(port), rate, join(dir, `access-${rate}.log`), ...upstreamPorts.map(String)]);
    targets.push({ name: `lockstep, access log ${rate}`, url: `http://127.0.0.1:${port}/`, pid: al.pid });
  }
  if (process.env.ONLY_LOCKSTEP) {
    // Only the Lockstep targets (and direct): the access-log comparison without nginx/haproxy.
  } else if (has('nginx')) {
    const port = await freePort();
    const ng = startDaemon('nginx', ['-c', nginxConfig(dir, port, upstreamPorts), '-p', dir, '-g', 'daemon off;']);
    targets.push({ name: 'nginx', url: `http://127.0.0.1:${port}/`, pid: ng.pid });
  }
  if (!process.env.ONLY_LOCKSTEP && has('haproxy')) {
    const port = await freePort();
    const hp = startDaemon('haproxy', ['-f', haproxyConfig(dir, port, upstreamPorts), '-db']);
    targets.push({ name: 'haproxy', url: `http://127.0.0.1:${port}/`, pid: hp.pid });
    const mport = await freePort();
    const managed = await startNode(['managed-haproxy', String(mport), ...upstreamPorts.map(String)]);
    targets.push({ name: 'Lockstep-managed HAProxy', url: `http://127.0.0.1:${mport}/`, pid: managed.pid });
  }
  for (const t of targets) await waitForHttp(t.url);

  const results = new Map<string, WrkResult & { cpuUs: number }>();
  for (const t of targets) {
    await wrk(t.url, 2, connections); // warm-up: JIT, pools
    const cpuBefore = t.pid ? cpuSeconds(t.pid) : NaN;
    const r = await wrk(t.url, seconds, connections);
    // CPU per request of the target alone: robust when other load shares the machine.
    const cpuUs = ((t.pid ? cpuSeconds(t.pid) : NaN) - cpuBefore) / r.requests * 1e6;
    results.set(t.name, { ...r, cpuUs });
    console.log(`${t.name}: ${r.rps.toFixed(0)} req/s, ${cpuUs.toFixed(0)} us CPU/request`);
  }
  const nginx = results.get('nginx')?.rps;
  const plainHaproxy = results.get('haproxy')?.rps;
  const managedHaproxy = results.get('Lockstep-managed HAProxy')?.rps;
  if (plainHaproxy && managedHaproxy) console.log(`\nLockstep-managed HAProxy / plain HAProxy: ${(managedHaproxy / plainHaproxy).toFixed(2)} (goal >= 0.95)`);
  console.log(`\nwrk -t2 -c${connections} -d${seconds}s, 3 upstreams (node:http), ${new Date().toISOString()}\n`);
  console.log('| target | req/s | p50 | p99 | vs nginx | CPU us/request | errors |');
  console.log('|---|---:|---:|---:|---:|---:|---|');
  for (const t of targets) {
    const r = results.get(t.name)!;
    const ratio = nginx ? (r.rps / nginx).toFixed(2) : '-';
    console.log(`| ${t.name} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${ratio} | ${r.cpuUs.toFixed(0)} | ${r.errors} |`);
  }

  if (rssRequests > 0 && lock.pid) {
    const lockRps = results.get('lockstep')!.rps || 1000;
    const before = rssMiB(lock.pid);
    let done = 0;
    while (done < rssRequests) {
      const s = Math.min(120, Math.max(1, Math.ceil((rssRequests - done) / lockRps)));
      done += (await wrk(`http://127.0.0.1:${lockPort}/`, s, connections)).requests;
    }
    const after = rssMiB(lock.pid);
    console.log(`\nlockstep RSS: ${before.toFixed(1)} MiB before, ${after.toFixed(1)} MiB after ${done} more requests`);
  }
}

async function stopAll(): Promise<void> {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'upstream') await runUpstream(Number(rest[0]));
else if (mode === 'managed-haproxy') await runManagedHaproxy(Number(rest[0]), rest.slice(1).map(Number));
else if (mode === 'lockstep') await runLockstep(Number(rest[0]), Number(rest[1]), rest.slice(2).map(Number));
else if (mode === 'lockstep-log') await runLockstep(Number(rest[0]), 1, rest.slice(3).map(Number), { sampleRate: Number(rest[1]), path: rest[2]! });
else {
  try {
    await main();
  } finally {
    await stopAll();
  }
}
