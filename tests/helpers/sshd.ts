/**
 * Real OpenSSH test hosts: one `sshd` process per host on its own loopback address, run as the
 * current user, each with its own generated host key, config, deploy directory and log. No SSH
 * mocks: the deployer talks to these exactly as it would to a server.
 *
 * Usage:
 *   const fleet = await startSshHosts(3, { baseAddress: '127.0.0.21' });
 *   const inventoryFile = fleet.writeInventory({ app: {...} });
 *   ...
 *   await fleet.stop();
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';

const run = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';
export const SSHD_MISSING = 'sshd not found: install the Debian package openssh-server (apt-get install openssh-server)';
/** Bounded wait for a new sshd to accept: at most this many probes, 50 ms apart. */
const READY_PROBES = 200;

export interface SshHost {
  /** Instance name, `ssh-1`, `ssh-2`, ... (or `<namePrefix>N`). */
  name: string;
  /** Loopback address sshd listens on (and the app should bind), e.g. 127.0.0.11. */
  address: string;
  port: number;
  /** Absolute deploy directory for this host (exists, empty at start). */
  deployTo: string;
  /** `SHA256:...` of the host's current key, as printed by `ssh-keygen -lf`. */
  hostKeyFingerprint: string;
  /** Private ed25519 host key file (the .pub is beside it). */
  hostKeyFile: string;
  /** Extra host keys (options.extraHostKeyTypes), offered by sshd besides the ed25519 one. */
  extraHostKeys: { type: 'rsa' | 'ecdsa'; file: string; fingerprint: string }[];
  /** sshd's stderr (LogLevel as configured). */
  logFile: string;
  /** The host's own directory (holds deployTo; HOME of its sessions). */
  hostDir: string;
}

export interface SshFleetOptions {
  /** First loopback address; hosts take the next ones. Default 127.0.0.11. Use a different base per test file. */
  baseAddress?: string;
  /** Instance name prefix. Default `ssh-`. */
  namePrefix?: string;
  /** sshd LogLevel. Default ERROR; VERBOSE logs authentications (useful to prove none happened). */
  logLevel?: 'ERROR' | 'INFO' | 'VERBOSE' | 'DEBUG';
  /** Host key types each host has besides ed25519 (real servers usually have several). Default none. */
  extraHostKeyTypes?: ('rsa' | 'ecdsa')[];
  /** Offer the SFTP subsystem. Default true; false models a hardened server without it. */
  sftp?: boolean;
  /**
   * File-mode creation mask (octal, e.g. `027`) sshd runs with; sessions inherit it (no PAM),
   * as a deploy user's login umask would apply. Default: this process's umask.
   */
  umask?: string;
  /**
   * Extra sshd_config lines for every host, at the end of the file (e.g. `MaxSessions 3`, or a
   * `Match LocalAddress 127.0.16.3` block for one host). Default none.
   */
  sshdConfig?: string[];
  /**
   * The SFTP subsystem command. Default `internal-sftp`. A command (e.g. a wrapper script around
   * /usr/lib/openssh/sftp-server) runs as the login user with HOME set to the host's directory.
   */
  sftpCommand?: string;
}

export interface InventoryExtra {
  /** Inventory `app` section. Default: a stub whose commands do nothing (tests that deploy the real app pass theirs). */
  app?: Record<string, unknown>;
  deploy?: Record<string, unknown>;
  proxy?: Record<string, unknown>;
  /** Extra keys of the inventory `ssh` section (keepalive, timeouts). */
  ssh?: Record<string, unknown>;
  /** Override the known_hosts path written into the inventory. Default: the fleet's. */
  knownHosts?: string;
  /** Port every instance's app listens on (each on its own address). Default 4100 + host index. */
  appPort?: number;
}

export interface SshFleet {
  hosts: SshHost[];
  /** Client private key authorised on every host. */
  identityFile: string;
  /** known_hosts listing every host's current ed25519 key as `[address]:port`. */
  knownHostsFile: string;
  /** The login user (the current user). */
  user: string;
  /** Temp directory holding everything; removed by stop(). */
  dir: string;
  /** Look a host up by name. @throws Error when there is none. */
  host(name: string): SshHost;
  /** Stop one host's sshd and every connection it serves (existing sessions drop). */
  stopHost(name: string): Promise<void>;
  /** Start a stopped host again on the same address and port. */
  startHost(name: string): Promise<void>;
  /**
   * Freeze a host (SIGSTOP its sshd and every connection process): TCP stays up but nothing
   * answers, as with a hung machine or a network partition. `thawHost` resumes it.
   */
  freezeHost(name: string): void;
  thawHost(name: string): void;
  /**
   * Give a host a new host key (as a re-installed or impersonated server would) and restart
   * it. known_hosts is NOT updated. @returns the new fingerprint.
   */
  replaceHostKey(name: string): Promise<string>;
  /** Write `inventory.yaml` for the fleet into `dir`. @returns its path. */
  writeInventory(extra?: InventoryExtra): string;
  /** Stop every sshd and remove `dir`. Idempotent. */
  stop(): Promise<void>;
}

function addressAt(base: string, offset: number): string {
  const parts = base.split('.').map(Number);
  if (parts.length !== 4 || parts[0] !== 127 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`baseAddress must be an IPv4 loopback address (127.x.y.z), got ${base}`);
  }
  const last = parts[3]! + offset;
  if (last > 254) throw new Error(`too many hosts for base ${base}`);
  return `${parts[0]}.${parts[1]}.${parts[2]}.${last}`;
}

/** A port nothing listens on at `address` right now (the kernel picks it). */
export function freePort(address: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, address, () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** True when something at address:port answers with an SSH identification line. */
function answersSsh(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let data = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (data.includes('\n')) done(data.startsWith('SSH-2.0-'));
    });
    sock.connect(port, address);
  });
}

async function fingerprintOf(pubFile: string): Promise<string> {
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile]);
  const fp = stdout.split(/\s+/)[1];
  if (!fp?.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen -l output: ${stdout}`);
  return fp;
}

async function generateKey(file: string, type: 'ed25519' | 'rsa' | 'ecdsa' = 'ed25519'): Promise<void> {
  rmSync(file, { force: true });
  rmSync(`${file}.pub`, { force: true });
  await run('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', '', '-f', file]);
}

/** Direct children of a process, read from /proc (Linux). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // The process ended while we were looking.
    }
  }
  return out;
}

function descendantsOf(pid: number): number[] {
  const all: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of childrenOf(queue.shift()!)) {
      all.push(child);
      queue.push(child);
    }
  }
  return all;
}

interface HostState extends SshHost {
  configFile: string;
  process?: ChildProcess;
}

// sshd processes outlive a crashed test run unless we stop them when the worker exits.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of running) {
    if (!p.pid) continue;
    for (const pid of [...descendantsOf(p.pid), p.pid]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
});

/**
 * Start `count` real sshd hosts on consecutive loopback addresses from `options.baseAddress`
 * (default 127.0.0.11), each on a free port, and wait until each answers SSH.
 * @returns the fleet: hosts, client identity file, known_hosts, helpers to stop/start hosts,
 *   replace a host key and write an inventory.
 * @throws Error when sshd is missing or a host does not come up (with its log).
 */
export async function startSshHosts(count: number, options: SshFleetOptions = {}): Promise<SshFleet> {
  if (!existsSync(SSHD)) throw new Error(SSHD_MISSING);
  const base = options.baseAddress ?? '127.0.0.11';
  const prefix = options.namePrefix ?? 'ssh-';
  const logLevel = options.logLevel ?? 'ERROR';
  const user = os.userInfo().username;
  // sshd refuses to start as root without its privilege-separation directory.
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const dir = mkdtempSync(join(os.tmpdir(), 'lockstep-sshd-'));
  const identityFile = join(dir, 'client_ed25519');
  await generateKey(identityFile);
  const knownHostsFile = join(dir, 'known_hosts');

  const hosts: HostState[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}${i + 1}`;
    const address = addressAt(base, i);
    const hostDir = join(dir, name);
    const deployTo = join(hostDir, 'deploy');
    mkdirSync(deployTo, { recursive: true });
    const hostKeyFile = join(hostDir, 'ssh_host_ed25519_key');
    await generateKey(hostKeyFile);
    const extraHostKeys: SshHost['extraHostKeys'] = [];
    for (const type of options.extraHostKeyTypes ?? []) {
      const file = join(hostDir, `ssh_host_${type}_key`);
      await generateKey(file, type);
      extraHostKeys.push({ type, file, fingerprint: await fingerprintOf(`${file}.pub`) });
    }
    const port = await freePort(address);
    const configFile = join(hostDir, 'sshd_config');
    hosts.push({
      name,
      address,
      port,
      deployTo,
      hostKeyFile,
      extraHostKeys,
      hostKeyFingerprint: await fingerprintOf(`${hostKeyFile}.pub`),
      logFile: join(hostDir, 'sshd.log'),
      configFile,
      hostDir,
    });
  }

  const writeConfig = (h: HostState) =>
    writeFileSync(
      h.configFile,
      [
        `ListenAddress ${h.address}`,
        `Port ${h.port}`,
        `HostKey ${h.hostKeyFile}`,
        ...h.extraHostKeys.map((k) => `HostKey ${k.file}`),
        `PidFile ${join(h.hostDir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${identityFile}.pub`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        // Tests run as root in CI containers; keys only.
        'PermitRootLogin prohibit-password',
        'UsePAM no',
        // Temp directories are not owned the way StrictModes wants.
        'StrictModes no',
        'UseDNS no',
        // A clean server's login: this machine's own ~/.bashrc (pyenv init, ~250 ms) would
        // otherwise run on every command, since bash sources it for sessions started by sshd.
        `SetEnv HOME=${h.hostDir}`,
        ...(options.sftp === false ? [] : [`Subsystem sftp ${options.sftpCommand ?? 'internal-sftp'}`]),
        `LogLevel ${logLevel}`,
        // Last: they may open a `Match` block.
        ...(options.sshdConfig ?? []),
        '',
      ].join('\n'),
    );
  hosts.forEach(writeConfig);

  const writeKnownHosts = () => {
    const lines = hosts.map((h) => {
      const [type, b64] = readFileSync(`${h.hostKeyFile}.pub`, 'utf8').trim().split(/\s+/);
      return `[${h.address}]:${h.port} ${type} ${b64}`;
    });
    writeFileSync(knownHostsFile, lines.join('\n') + '\n');
  };

  const find = (name: string): HostState => {
    const h = hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no test host named ${name} (have ${hosts.map((x) => x.name).join(', ')})`);
    return h;
  };

  const startHost = async (h: HostState): Promise<void> => {
    if (h.process) return;
    const log = openSync(h.logFile, 'a');
    const args = ['-D', '-e', '-f', h.configFile];
    if (options.umask !== undefined && !/^[0-7]{3,4}$/.test(options.umask)) throw new Error(`umask must be octal digits, got ${options.umask}`);
    // `exec` keeps the pid: the shell only sets the umask sshd (and every session) inherits.
    const child = options.umask
      ? spawn('/bin/sh', ['-c', `umask ${options.umask} && exec "$0" "$@"`, SSHD, ...args], { stdio: ['ignore', 'ignore', log] })
      : spawn(SSHD, args, { stdio: ['ignore', 'ignore', log] });
    closeSync(log);
    running.add(child);
    let exited: string | undefined;
    child.once('exit', (code, signal) => {
      exited = `sshd exited (${signal ?? code})`;
      running.delete(child);
    });
    h.process = child;
    for (let probe = 0; probe < READY_PROBES && !exited; probe++) {
      if (await answersSsh(h.address, h.port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    await stopHost(h);
    const logText = existsSync(h.logFile) ? readFileSync(h.logFile, 'utf8').trim() : '';
    throw new Error(`test host ${h.name} (${h.address}:${h.port}) did not start: ${exited ?? 'no SSH answer'}\n${logText}`);
  };

  const stopHost = async (h: HostState): Promise<void> => {
    const child = h.process;
    h.process = undefined;
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    // The listener's children serve open connections; stopping only the listener would leave
    // them up, and "host stopped" would not drop sessions. Like a crash: the per-connection
    // processes get SIGKILL first, so none can still report an exit status to its client.
    const connections = childrenOf(child.pid);
    const sessions = connections.flatMap((pid) => descendantsOf(pid));
    const signal = (pids: number[], sig: NodeJS.Signals) => {
      for (const pid of pids) {
        try {
          process.kill(pid, sig);
        } catch {
          // Already gone.
        }
      }
    };
    signal(connections, 'SIGKILL');
    signal(sessions, 'SIGTERM');
    signal([child.pid], 'SIGTERM');
    // A frozen (SIGSTOPped) process only acts on SIGTERM once it runs again.
    signal([...sessions, child.pid], 'SIGCONT');
    await exited;
  };

  let stopped = false;
  const fleet: SshFleet = {
    hosts,
    identityFile,
    knownHostsFile,
    user,
    dir,
    host: find,
    stopHost: (name) => stopHost(find(name)),
    freezeHost(name) {
      const pid = find(name).process?.pid;
      if (!pid) throw new Error(`test host ${name} is not running`);
      for (const p of [pid, ...descendantsOf(pid)]) process.kill(p, 'SIGSTOP');
    },
    thawHost(name) {
      const pid = find(name).process?.pid;
      if (!pid) return;
      for (const p of [pid, ...descendantsOf(pid)]) {
        try {
          process.kill(p, 'SIGCONT');
        } catch {
          // Ended meanwhile.
        }
      }
    },
    startHost: (name) => startHost(find(name)),
    async replaceHostKey(name) {
      const h = find(name);
      await stopHost(h);
      await generateKey(h.hostKeyFile);
      h.hostKeyFingerprint = await fingerprintOf(`${h.hostKeyFile}.pub`);
      await startHost(h);
      return h.hostKeyFingerprint;
    },
    writeInventory(extra = {}) {
      return writeInventoryFile(fleet, extra);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(hosts.map((h) => stopHost(h)));
      rmSync(dir, { recursive: true, force: true });
    },
  };

  // The free port was only free when we looked: another process may take it before sshd
  // binds. Then pick another one (a bounded number of times) before anything has used it.
  const startFirstTime = async (h: HostState) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await startHost(h);
      } catch (e) {
        if (attempt >= 3 || !/Address already in use/.test((e as Error).message)) throw e;
        h.port = await freePort(h.address);
        writeConfig(h);
      }
    }
  };
  try {
    await Promise.all(hosts.map((h) => startFirstTime(h)));
  } catch (e) {
    await fleet.stop();
    throw e;
  }
  writeKnownHosts();
  return fleet;
}

const STUB_APP = {
  name: 'stub',
  build: { command: 'true', output: 'dist' },
  service: { start: 'true', stop: 'true', restart: 'true' },
};

function writeInventoryFile(fleet: SshFleet, extra: InventoryExtra): string {
  const file = join(fleet.dir, 'inventory.yaml');
  const doc: Record<string, unknown> = {
    app: extra.app ?? STUB_APP,
    ...(extra.deploy ? { deploy: extra.deploy } : {}),
    ssh: { user: fleet.user, identity_file: fleet.identityFile, known_hosts: extra.knownHosts ?? fleet.knownHostsFile, ...extra.ssh },
    ...(extra.proxy ? { proxy: extra.proxy } : {}),
    instances: fleet.hosts.map((h, i) => ({
      name: h.name,
      transport: 'ssh',
      host: h.address,
      ssh_port: h.port,
      deploy_to: h.deployTo,
      app_address: h.address,
      // Each host has its own address, so one port per host cannot collide across hosts.
      app_port: extra.appPort ?? 4100 + i,
    })),
  };
  writeFileSync(file, stringify(doc));
  return file;
}
