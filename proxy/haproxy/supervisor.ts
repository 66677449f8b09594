/**
 * The HAProxy engine (`proxy.engine: haproxy`): render haproxy.cfg from the inventory, validate it
 * with `haproxy -c`, run HAProxy in master-worker mode (`-W`), reload it without dropping
 * connections (SIGUSR2 to the master: the listeners pass to the new worker, the old one finishes
 * its requests), keep drain/maint across reloads and restarts (`show servers state` is dumped to the
 * server-state file before each reload and at stop; HAProxy loads it at start), and serve Lockstep's
 * admin API on top of the Runtime API (control.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError } from '../../config/errors.ts';
import { loadInventory, type Inventory } from '../../config/inventory.ts';
import { affinitySecretFile, parseHostPort, proxySection } from '../../config/proxy-section.ts';
import { resolveSecret } from '../../config/secrets.ts';
import { createAdminServer } from '../admin.ts';
import type { AdminControl } from '../control.ts';
import { cookieValue, haproxyPaths, validateHaproxyConfig, writeHaproxyConfig, type HaproxyPlan } from './config.ts';
import { haproxyControl, type HaproxyInstanceInfo } from './control.ts';
import { runtimeCommand } from './runtime.ts';

/** Bound on HAProxy's start and on each reload (until the new worker answers), ms. */
const START_TIMEOUT_MS = 15_000;

/** A running, supervised HAProxy. */
export interface RunningHaproxy {
  readonly url: string;
  readonly adminUrl: string;
  /** The master process id. */
  readonly pid: number;
  readonly control: AdminControl;
  /** The rendered config file. */
  readonly configFile: string;
  /** Resolves (with why) if HAProxy's master exits without `close()`: the engine is gone. */
  readonly died: Promise<string>;
  /** Re-read the inventory file, re-render, validate, dump server state and reload. */
  reload(): Promise<{ added: string[]; removed: string[] }>;
  /** Dump server state, stop HAProxy gracefully (in-flight requests finish) and the admin API. Idempotent. */
  close(): Promise<void>;
}

/**
 * The engine's plan for an inventory: the run dir (`proxy.haproxy.run_dir`, relative to the
 * inventory), listen address, one server per instance with an opaque cookie value (HMAC of the
 * affinity secret), health checks, timeouts and the hold of pinned requests.
 * @throws ConfigError for `proxy.listen` with port 0 (HAProxy needs a fixed port) or unreadable secrets.
 */
export function haproxyPlanFromInventory(inventory: Inventory, env: NodeJS.ProcessEnv = process.env): HaproxyPlan {
  const section = proxySection(inventory);
  const listen = parseHostPort(section.listen, 'proxy.listen', inventory.file);
  if (listen.port === 0) throw new ConfigError(`${inventory.file}: field "proxy.listen": engine haproxy needs a fixed port, not 0`, { file: inventory.file, field: 'proxy.listen' });
  const secret = resolveSecret(section.affinity_secret_env, affinitySecretFile(inventory), env).value;
  const hc = section.health_check;
  return {
    runDir: resolve(inventory.dir, section.haproxy.run_dir),
    listen,
    servers: inventory.instances.map((i) => ({
      name: i.name,
      address: i.appAddress,
      port: i.appPort,
      weight: i.weight,
      ...(i.maxConnections !== undefined ? { maxConnections: i.maxConnections } : {}),
      cookie: cookieValue(secret, i.name),
    })),
    healthPath: inventory.app.health_path,
    healthCheck: { intervalMs: hc.interval_ms, timeoutMs: hc.timeout_ms, rise: hc.rise, fall: hc.fall },
    balance: section.balance,
    cookieName: 'lockstep_affinity',
    timeouts: { connectMs: section.connect_timeout_ms, responseMs: section.response_timeout_ms, idleMs: section.idle_timeout_ms },
    maxAttempts: section.retries,
    holdMs: section.hold_timeout_ms,
    source: inventory.file,
  };
}

function infoOf(inventory: Inventory): HaproxyInstanceInfo[] {
  return inventory.instances.map((i) => ({ name: i.name, url: i.url, weight: i.weight }));
}

/** The worker pid from `show info`, or null while the socket does not answer. */
async function workerPid(socket: string): Promise<number | null> {
  try {
    const m = /^Pid: (\d+)$/m.exec(await runtimeCommand(socket, 'show info', 2000));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>, failed: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = failed();
    if (why !== null) throw new Error(why);
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`HAProxy: ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Start the HAProxy engine for an inventory and its admin API.
 * @param options.env environment for the secrets. @param options.logger state changes and HAProxy's own log lines.
 * @returns the running engine.
 * @throws ConfigError (exit 2) when the rendered config fails `haproxy -c` (haproxy's message, naming
 *   the file), haproxy cannot be run, or HAProxy / the admin API cannot listen.
 */
export async function startHaproxyEngine(inventory: Inventory, options: { env?: NodeJS.ProcessEnv; logger: Logger }): Promise<RunningHaproxy> {
  const { logger } = options;
  const env = options.env ?? process.env;
  const section = proxySection(inventory);
  const bin = section.haproxy.bin;
  let current = inventory;
  let plan = haproxyPlanFromInventory(inventory, env);
  const paths = haproxyPaths(plan.runDir);
  const configFile = writeHaproxyConfig(plan, (f) => validateHaproxyConfig(bin, f));

  const stderr: string[] = [];
  const child: ChildProcess = spawn(bin, ['-W', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let exited: string | null = null;
  let died: (why: string) => void = () => undefined;
  const diedPromise = new Promise<string>((r) => (died = r));
  child.on('error', (err) => (exited = `cannot run ${bin}: ${err.message}`));
  child.on('exit', (code, sig) => {
    exited = `haproxy exited (${sig ?? `code ${code}`}): ${stderr.slice(-6).join(' | ')}`;
    if (!closing) {
      logger.error({ code, signal: sig }, 'haproxy exited on its own');
      died(exited);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    for (const line of d.split('\n').filter(Boolean)) {
      stderr.push(line);
      if (stderr.length > 50) stderr.shift();
      logger.info({ haproxy: line }, 'haproxy');
    }
  });
  let closing = false;
  try {
    await waitFor('the stats socket did not answer', START_TIMEOUT_MS, async () => (await workerPid(paths.socket)) !== null, () => exited);
  } catch (e) {
    child.kill('SIGKILL');
    const msg = (e as Error).message;
    if (/cannot bind|Address already in use|Cannot assign/i.test(msg)) {
      throw new ConfigError(`proxy: HAProxy cannot listen on ${section.listen}: ${msg}. Check proxy.listen in ${inventory.file}`, { file: inventory.file, field: 'proxy.listen' });
    }
    throw new ConfigError(`proxy: HAProxy did not start: ${msg}`, { file: inventory.file });
  }

  async function dumpState(): Promise<void> {
    const text = await runtimeCommand(paths.socket, 'show servers state');
    writeFileSync(`${paths.state}.tmp`, text, { mode: 0o600 });
    renameSync(`${paths.state}.tmp`, paths.state);
  }

  let reloading: Promise<unknown> = Promise.resolve();
  const reload = (): Promise<{ added: string[]; removed: string[] }> => {
    const run = reloading.then(async () => {
      const next = loadInventory(current.file);
      const nextPlan = haproxyPlanFromInventory(next, env);
      writeHaproxyConfig(nextPlan, (f) => validateHaproxyConfig(bin, f));
      const before = new Set(plan.servers.map((s) => s.name));
      const after = new Set(nextPlan.servers.map((s) => s.name));
      await dumpState();
      const oldPid = await workerPid(paths.socket);
      child.kill('SIGUSR2');
      await waitFor('the reloaded worker did not answer', START_TIMEOUT_MS, async () => {
        const pid = await workerPid(paths.socket);
        return pid !== null && pid !== oldPid;
      }, () => exited);
      current = next;
      plan = nextPlan;
      const changes = { added: [...after].filter((n) => !before.has(n)), removed: [...before].filter((n) => !after.has(n)) };
      logger.info(changes, 'haproxy reloaded');
      return changes;
    });
    reloading = run.catch(() => undefined);
    return run;
  };

  const control = haproxyControl({ socketPath: paths.socket, instances: () => infoOf(current), reload });
  const admin: http.Server = createAdminServer({ control, token: resolveSecret(section.admin_token_env, section.adminTokenFile, env).value, logger, versionPath: inventory.app.version_path });
  const adminListen = parseHostPort(section.admin_listen, 'proxy.admin_listen', inventory.file);
  let adminAddr: AddressInfo;
  try {
    adminAddr = await new Promise<AddressInfo>((res, rej) => {
      admin.once('error', rej);
      admin.listen({ host: adminListen.host, port: adminListen.port, exclusive: true }, () => res(admin.address() as AddressInfo));
    });
  } catch (e) {
    closing = true;
    child.kill('SIGTERM');
    throw new ConfigError(`proxy: cannot listen on proxy.admin_listen ${section.admin_listen} (${(e as NodeJS.ErrnoException).code}). Check ${inventory.file}`, { file: inventory.file });
  }
  const host = (h: string) => (h.includes(':') ? `[${h}]` : h);
  const url = `http://${host(plan.listen.host)}:${plan.listen.port}`;
  const adminUrl = `http://${host(adminAddr.address)}:${adminAddr.port}`;
  logger.info({ url, adminUrl, pid: child.pid, config: configFile, stateFile: existsSync(paths.state) ? paths.state : null }, 'haproxy started');

  let closed: Promise<void> | null = null;
  return {
    url,
    adminUrl,
    pid: child.pid!,
    died: diedPromise,
    control,
    configFile,
    reload,
    close() {
      closed ??= (async () => {
        closing = true;
        await reloading;
        await dumpState().catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'could not save the server state before stopping'));
        const adminClosed = new Promise<void>((r) => admin.close(() => r()));
        admin.closeAllConnections();
        await adminClosed;
        if (exited === null) {
          const gone = new Promise<void>((r) => child.once('exit', () => r()));
          // SIGUSR1: soft stop, the workers finish what they serve; SIGTERM after the grace time.
          child.kill('SIGUSR1');
          const timer = setTimeout(() => child.kill('SIGTERM'), 10_000);
          await gone;
          clearTimeout(timer);
        }
        logger.info('haproxy stopped');
      })();
      return closed;
    },
  };
}
