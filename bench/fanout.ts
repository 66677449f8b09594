/**
 * Benchmark: fan-out. Lockstep's deploy (first), re-deploy (same release: nothing uploaded), drift
 * scan and rollback on N real sshd hosts, beside ansible-core doing the same work on the same hosts
 * in the same run (copy the artifact, check its sha256, unpack, atomic symlink switch, restart,
 * health check), at each size asked for.
 *
 *   npx tsx bench/fanout.ts [--sizes 1,10,50] [--base 127.0.20.11] [--no-ansible]
 *
 * The app is a tiny one on purpose (a 20-line node:http server behind the real app's `bin/service`,
 * artifact about 2 KB): the bench is about fan-out (connections, channels, round trips, the
 * deployer's own CPU and memory), not about moving megabytes. Releases are packaged once up front,
 * so neither side builds. Lockstep runs without a proxy (ansible has none either), with
 * `deploy.concurrency` and `deploy.batch_size` = N (all hosts at once, as ansible's `forks` = N).
 * Lockstep's and ansible's apps use separate deploy directories and ports on the same hosts; the
 * other side's apps are stopped while one side is measured.
 *
 * Recorded for Lockstep: wall time per operation, the deployer's peak RSS (sampled every 20 ms),
 * SSH connections and channels opened per host (counted on ssh2's Client), and bytes the deployer
 * wrote to the SSH sockets. Sizes are bounded (1..100 hosts, at most 250 addresses from --base);
 * loopback only; everything is stopped at the end. Needs openssh-server and ansible-core
 * (`apt-get install ansible-core`; bench only, not CI).
 */
import { execFile } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import ssh2 from 'ssh2';
import { loadInventory, type Inventory } from '../config/inventory.ts';
import { packageRelease } from '../deployer/build/build.ts';
import { artifactsDir } from '../deployer/build/release-source.ts';
import { scanDrift } from '../deployer/drift/scan.ts';
import { deploy } from '../deployer/rollout/deploy.ts';
import { rollback } from '../deployer/rollout/rollback.ts';
import { startSshHosts, type SshFleet } from '../tests/helpers/sshd.ts';

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { sizes: { type: 'string', default: '1,10' }, base: { type: 'string', default: '127.0.20.11' }, 'no-ansible': { type: 'boolean', default: false } } });
/** `--no-ansible`: Lockstep only (ansible columns show n/a), for larger sizes on a busy machine. */
const withAnsible = !values['no-ansible'];
const sizes = values.sizes!.split(',').map(Number);
if (sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 100)) throw new Error('--sizes: integers 1..100, e.g. 1,10,50');

// --- instrumentation of the deployer's SSH use (counting only; nothing is changed) ---------------
const counts = { connections: 0, channels: 0 };
const proto = ssh2.Client.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
for (const [method, key] of [['connect', 'connections'], ['exec', 'channels'], ['sftp', 'channels'], ['shell', 'channels']] as const) {
  const original = proto[method]!;
  proto[method] = function (this: unknown, ...args: unknown[]) {
    counts[key]++;
    return original.apply(this, args);
  };
}
const sockets = new Set<net.Socket>();
const originalConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
  sockets.add(this);
  return (originalConnect as (...a: unknown[]) => net.Socket).apply(this, args);
} as typeof net.Socket.prototype.connect;
let sshPorts = new Set<number>();
const bytesToSsh = (): number => [...sockets].filter((s) => sshPorts.has(s.remotePort ?? -1) || sshPorts.has((s as unknown as { _lockstepPort?: number })._lockstepPort ?? -1)).reduce((n, s) => n + s.bytesWritten, 0);
// remotePort is gone once a socket is closed: remember it while it is open.
setInterval(() => {
  for (const s of sockets) if (s.remotePort !== undefined) (s as unknown as { _lockstepPort?: number })._lockstepPort = s.remotePort;
}, 5).unref();

interface Measure {
  ms: number;
  peakRssMiB: number;
  connections: number;
  channels: number;
  bytes: number;
}

async function measure(what: () => Promise<void>): Promise<Measure> {
  for (const s of sockets) if (s.destroyed) sockets.delete(s);
  const c0 = { ...counts };
  const b0 = bytesToSsh();
  let peak = process.memoryUsage.rss();
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  const t = performance.now();
  await what();
  const ms = performance.now() - t;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());
  return { ms, peakRssMiB: peak / 2 ** 20, connections: counts.connections - c0.connections, channels: counts.channels - c0.channels, bytes: bytesToSsh() - b0 };
}

// --- the tiny app ----------------------------------------------------------------------------------
function writeTinyApp(dir: string, variant: string): void {
  mkdirSync(join(dir, 'server'), { recursive: true });
  mkdirSync(join(dir, 'bin'), { recursive: true });
  copyFileSync(join(repoRoot, 'app/bin/service'), join(dir, 'bin/service'));
  chmodSync(join(dir, 'bin/service'), 0o755);
  writeFileSync(
    join(dir, 'server/index.mjs'),
    `// ${variant}
import http from 'node:http';
import { readFileSync } from 'node:fs';
let info = { release: 'dev', digest: null };
try { info = JSON.parse(readFileSync(new URL('../manifest.json', import.meta.url), 'utf8')); } catch {}
const body = JSON.stringify({ release: info.release, digest: info.digest, instance: process.env.LOCKSTEP_INSTANCE ?? null, pid: process.pid, started_at: new Date().toISOString() });
const server = http.createServer((req, res) => {
  if (req.url === '/version') { res.writeHead(200, { 'content-type': 'application/json' }); res.end(body); return; }
  res.writeHead(200, { 'content-type': 'text/plain' }); res.end('ok\\n');
});
server.listen(Number(process.env.PORT), process.env.HOST);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`,
  );
}

// --- ansible ---------------------------------------------------------------------------------------
const PLAYBOOK = `- hosts: all
  gather_facts: false
  vars:
    root: "{{ deploy_to }}"
    rel: "{{ root }}/releases/{{ release }}"
    env: { HOST: "{{ app_host }}", PORT: "{{ app_port }}", RUN_DIR: "{{ root }}/shared/run", LOG_DIR: "{{ root }}/shared/logs", LOCKSTEP_INSTANCE: "{{ inventory_hostname }}" }
  tasks:
    - name: directories
      file: { path: "{{ item }}", state: directory }
      loop: ["{{ root }}/artifacts", "{{ root }}/releases", "{{ root }}/shared/run", "{{ root }}/shared/logs"]
    - name: copy the artifact
      copy: { src: "{{ artifact }}", dest: "{{ root }}/artifacts/{{ release }}.tar.gz" }
    - name: sha256 of the artifact
      stat: { path: "{{ root }}/artifacts/{{ release }}.tar.gz", checksum_algorithm: sha256 }
      register: art
    - name: check it
      assert: { that: ["art.stat.checksum == artifact_sha256"], quiet: true }
    - name: release directory
      file: { path: "{{ rel }}", state: directory }
    - name: unpack
      unarchive: { src: "{{ root }}/artifacts/{{ release }}.tar.gz", dest: "{{ rel }}", remote_src: true, creates: "{{ rel }}/server/index.mjs" }
    - name: what current points at
      stat: { path: "{{ root }}/current" }
      register: cur
    - name: atomic switch of current
      shell: ln -sfn "{{ rel }}" "{{ root }}/current.tmp" && mv -T "{{ root }}/current.tmp" "{{ root }}/current"
      when: not cur.stat.exists or cur.stat.lnk_source != rel
      register: switched
    - name: restart
      shell: bin/service restart
      args: { chdir: "{{ root }}/current" }
      environment: "{{ env }}"
      when: switched is changed
    - name: health
      uri: { url: "http://{{ app_host }}:{{ app_port }}/healthz", status_code: 200 }
      register: h
      check_mode: false
      until: h.status == 200
      retries: 100
      delay: 0.2
`;

async function ansible(fleet: SshFleet, dir: string, release: string, artifact: string, sha256: string, check = false): Promise<void> {
  const hosts = fleet.hosts
    .map((h) =>
      `${h.name} ansible_host=${h.address} ansible_port=${h.port} ansible_user=${fleet.user} ansible_ssh_private_key_file=${fleet.identityFile} ` +
      `deploy_to=${h.deployTo}/../ansible app_host=${h.address} app_port=4200`,
    )
    .join('\n');
  writeFileSync(join(dir, 'hosts.ini'), `[all]\n${hosts}\n`);
  writeFileSync(join(dir, 'deploy.yml'), PLAYBOOK);
  writeFileSync(
    join(dir, 'ansible.cfg'),
    `[defaults]\nforks = ${fleet.hosts.length}\nhost_key_checking = True\ninterpreter_python = /usr/bin/python3\nstdout_callback = default\nretry_files_enabled = False\n` +
      `[ssh_connection]\npipelining = True\nssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=${fleet.knownHostsFile} -o StrictHostKeyChecking=yes\ncontrol_path_dir = ${dir}/cp\n`,
  );
  const args = ['-i', join(dir, 'hosts.ini'), join(dir, 'deploy.yml'), '-e', `release=${release} artifact=${artifact} artifact_sha256=${sha256}`];
  if (check) args.push('--check');
  try {
    await run('ansible-playbook', args, { cwd: dir, env: { ...process.env, ANSIBLE_CONFIG: join(dir, 'ansible.cfg'), HOME: dir }, maxBuffer: 64 * 2 ** 20, timeout: 900_000 });
  } catch (e) {
    const out = (e as { stdout?: string }).stdout ?? '';
    throw new Error(`ansible-playbook failed: ${out.split('\n').filter((l) => /fatal|FAILED|UNREACHABLE/.test(l)).slice(0, 5).join('\n')}`);
  }
}

async function stopApps(fleet: SshFleet, which: 'lockstep' | 'ansible'): Promise<void> {
  await Promise.all(
    fleet.hosts.map((h) => {
      const root = which === 'lockstep' ? h.deployTo : join(h.deployTo, '../ansible');
      return run('sh', ['-c', `cd ${root}/current 2>/dev/null && RUN_DIR=${root}/shared/run bin/service stop || true`]).catch(() => undefined);
    }),
  );
}

/** Kill, by pid, any app process this run started that is still alive (its command line is inside the fleet's temp dir). */
function killLeftovers(fleet: SshFleet): void {
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.includes(`${fleet.dir}/`) && cmdline.includes('server/index.mjs')) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

// --- one size ----------------------------------------------------------------------------------------
interface Row {
  n: number;
  lockstep: Record<'deploy' | 'redeploy' | 'drift' | 'rollback', Measure>;
  ansible: Record<'deploy' | 'redeploy' | 'drift' | 'rollback', number>;
}

async function one(n: number): Promise<Row> {
  const fleet = await startSshHosts(n, { baseAddress: values.base!, namePrefix: 'h' });
  sshPorts = new Set(fleet.hosts.map((h) => h.port));
  try {
    const file = fleet.writeInventory({
      app: { name: 'tiny', build: { command: 'true', output: 'tiny' }, service: { start: 'bin/service start', stop: 'bin/service stop', restart: 'bin/service restart' }, shared_dirs: ['run', 'logs'] },
      deploy: { concurrency: Math.min(64, n), batch_size: n, activation_timeout_ms: 60_000, free_space_margin_bytes: 0, probe: { enabled: false } },
    });
    const inventory: Inventory = loadInventory(file);
    const releases: { release: string; artifact: string; sha256: string }[] = [];
    for (const v of ['a', 'b']) {
      const dir = join(fleet.dir, `tiny-${v}`);
      writeTinyApp(dir, v);
      const r = await packageRelease(dir, artifactsDir(inventory), { revision: null, dirty: false, time: `2026-12-07T10:0${v === 'a' ? 1 : 2}:00Z`, pinned: true });
      releases.push({ release: r.release, artifact: r.artifact, sha256: r.manifest.artifact.sha256 });
    }
    const [a, b] = releases as [(typeof releases)[0], (typeof releases)[0]];
    const must = (ok: boolean, what: string, why?: string): void => {
      if (!ok) throw new Error(`${what} failed at ${n} hosts: ${why ?? ''}`);
    };

    const lockstep = {} as Row['lockstep'];
    lockstep.deploy = await measure(async () => {
      const r = await deploy(inventory, { release: a.release });
      must(r.ok, 'deploy', r.failure);
    });
    lockstep.redeploy = await measure(async () => {
      const r = await deploy(inventory, { release: a.release });
      must(r.ok && r.instances.every((i) => i.uploadedBytes === 0), 're-deploy', r.failure);
    });
    lockstep.drift = await measure(async () => {
      const s = await scanDrift(inventory);
      must(s.report.instances.every((i) => i.status === 'ok'), 'drift scan', JSON.stringify(s.report.instances.filter((i) => i.status !== 'ok').slice(0, 2)));
    });
    const away = await deploy(inventory, { release: b.release });
    must(away.ok, 'deploy of release b', away.failure);
    lockstep.rollback = await measure(async () => {
      const r = await rollback(inventory, { to: a.release });
      must(r.ok, 'rollback', r.failure);
    });
    await stopApps(fleet, 'lockstep');

    const adir = join(fleet.dir, 'ansible-run');
    mkdirSync(join(adir, 'cp'), { recursive: true });
    const time = async (f: () => Promise<void>): Promise<number> => {
      const t = performance.now();
      await f();
      return performance.now() - t;
    };
    const an = { deploy: NaN, redeploy: NaN, drift: NaN, rollback: NaN } as Row['ansible'];
    if (!withAnsible) return { n, lockstep, ansible: an };
    an.deploy = await time(() => ansible(fleet, adir, a.release, a.artifact, a.sha256));
    an.redeploy = await time(() => ansible(fleet, adir, a.release, a.artifact, a.sha256));
    an.drift = await time(() => ansible(fleet, adir, a.release, a.artifact, a.sha256, true));
    await ansible(fleet, adir, b.release, b.artifact, b.sha256);
    an.rollback = await time(() => ansible(fleet, adir, a.release, a.artifact, a.sha256));
    await stopApps(fleet, 'ansible');
    return { n, lockstep, ansible: an };
  } finally {
    await stopApps(fleet, 'lockstep');
    await stopApps(fleet, 'ansible');
    killLeftovers(fleet);
    await fleet.stop();
  }
}

const rows: Row[] = [];
for (const n of sizes) {
  const row = await one(n);
  rows.push(row);
  const s = (m: Measure): string => `${(m.ms / 1000).toFixed(2)} s`;
  console.log(
    `${n} hosts: lockstep deploy ${s(row.lockstep.deploy)}, redeploy ${s(row.lockstep.redeploy)}, drift ${s(row.lockstep.drift)}, rollback ${s(row.lockstep.rollback)} | ` +
      `ansible deploy ${(row.ansible.deploy / 1000).toFixed(2)} s, redeploy ${(row.ansible.redeploy / 1000).toFixed(2)} s, check ${(row.ansible.drift / 1000).toFixed(2)} s, rollback ${(row.ansible.rollback / 1000).toFixed(2)} s`,
  );
}

const ops = ['deploy', 'redeploy', 'drift', 'rollback'] as const;
const lines = [
  '| hosts | operation | Lockstep | ansible-core | Lockstep / ansible | Lockstep vs 1 host | peak RSS (MiB) | SSH connections / host | channels / host | bytes sent / host |',
  '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
];
const first = rows.find((r) => r.n === 1);
for (const r of rows) {
  for (const op of ops) {
    const m = r.lockstep[op];
    const vs1 = first ? (m.ms / first.lockstep[op].ms).toFixed(2) : 'n/a';
    lines.push(
      `| ${r.n} | ${op} | ${(m.ms / 1000).toFixed(2)} s | ${withAnsible ? `${(r.ansible[op] / 1000).toFixed(2)} s` : 'n/a'} | ${withAnsible ? (m.ms / r.ansible[op]).toFixed(3) : 'n/a'} | ${vs1} | ${m.peakRssMiB.toFixed(0)} | ${(m.connections / r.n).toFixed(1)} | ${(m.channels / r.n).toFixed(1)} | ${Math.round(m.bytes / r.n)} |`,
    );
  }
}
console.log(lines.join('\n'));
process.exit(0);
