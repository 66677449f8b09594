/**
 * The HAProxy engine's configuration: `haproxy.cfg` (and the Lua hold action beside it) rendered
 * from the inventory, and its validation with `haproxy -c`. Pure functions except `writeHaproxyConfig`
 * and `validateHaproxyConfig`.
 *
 * What the rendered config gives (README, "Choosing an engine"): one frontend on `proxy.listen`,
 * one backend `fleet` with one `server <instance name>` per instance, HTTP health checks on the
 * app's health path with the inventory's interval/timeout/rise/fall, cookie stickiness with
 * opaque per-server cookie values, the proxy section's timeouts and retries, a stats socket with
 * admin level for the Runtime API, and a server-state file so drain/maint survive reloads.
 */
import { createHmac } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../config/errors.ts';

/** The backend every instance is a server of (`set server fleet/<name> ...`). */
export const HAPROXY_BACKEND = 'fleet';

/** One server line. */
export interface HaproxyServer {
  /** Instance name (also the HAProxy server name). */
  name: string;
  address: string;
  port: number;
  /** 1..256 (HAProxy's range; the inventory's larger weights are capped). */
  weight: number;
  maxConnections?: number;
  /** The value of the stickiness cookie that pins a client here (opaque, see cookieValue). */
  cookie: string;
}

/** Everything the renderer needs; built from the inventory by the supervisor. */
export interface HaproxyPlan {
  /** Directory of haproxy.cfg, the stats socket, the pid file and the server-state file. */
  runDir: string;
  listen: { host: string; port: number };
  servers: HaproxyServer[];
  healthPath: string;
  healthCheck: { intervalMs: number; timeoutMs: number; rise: number; fall: number };
  balance: 'round_robin' | 'least_connections';
  cookieName: string;
  timeouts: { connectMs: number; responseMs: number; idleMs: number };
  /** Attempts per request in total (HAProxy `retries` is this minus one). */
  maxAttempts: number;
  /** Requests pinned to a draining server wait this long (Lua action); 0: no hold. */
  holdMs: number;
  /** Named in the config's header comment. */
  source: string;
}

/** Paths of the files the engine keeps in its run dir. */
export function haproxyPaths(runDir: string): { config: string; socket: string; pid: string; state: string; lua: string } {
  return {
    config: join(runDir, 'haproxy.cfg'),
    socket: join(runDir, 'haproxy.sock'),
    pid: join(runDir, 'haproxy.pid'),
    state: join(runDir, 'server-state'),
    lua: join(runDir, 'hold.lua'),
  };
}

/**
 * The stickiness cookie value of an instance: the first 16 hex digits of HMAC-SHA256(secret, name),
 * so the cookie does not name the instance and cannot be forged for another one without the secret.
 */
export function cookieValue(secret: string, name: string): string {
  return createHmac('sha256', secret).update(`haproxy-server:${name}`).digest('hex').slice(0, 16);
}

function addr(host: string, port: number): string {
  return `${host}:${port}`;
}

/** `30000` ms to HAProxy's time format (`30000ms`). */
function ms(n: number): string {
  return `${Math.max(1, Math.round(n))}ms`;
}

/**
 * Render haproxy.cfg for a plan.
 * @param luaFile the hold action's file (default: hold.lua in the run dir).
 * @returns the file's text (HAProxy 2.6 syntax, Debian 12's package).
 */
export function renderHaproxyConfig(plan: HaproxyPlan, luaFile?: string): string {
  const p = haproxyPaths(plan.runDir);
  const hc = plan.healthCheck;
  const hold = plan.holdMs > 0;
  const lines = [
    `# Rendered by lockstep from ${plan.source}; re-rendered on every reload: do not edit.`,
    'global',
    `    stats socket ${p.socket} mode 600 level admin expose-fd listeners`,
    `    server-state-file ${p.state}`,
    `    pidfile ${p.pid}`,
    ...(hold ? [`    tune.lua.session-timeout ${ms(plan.holdMs + 5000)}`, `    lua-load ${luaFile ?? p.lua}`] : []),
    '',
    'defaults',
    '    mode http',
    '    load-server-state-from-file global',
    // As Lockstep's engine does (headers.ts): the app sees the client's address.
    '    option forwardfor',
    // Idle server connections serve any client: the app ties no state to a connection (the
    // Lockstep engine pools them the same way), and it keeps HAProxy at plain-HAProxy speed.
    '    http-reuse always',
    `    timeout connect ${ms(plan.timeouts.connectMs)}`,
    `    timeout server ${ms(plan.timeouts.responseMs)}`,
    `    timeout client ${ms(plan.timeouts.idleMs)}`,
    `    timeout http-keep-alive ${ms(plan.timeouts.idleMs)}`,
    `    timeout http-request ${ms(plan.timeouts.responseMs)}`,
    `    timeout queue ${ms(Math.max(plan.holdMs, plan.timeouts.connectMs))}`,
    `    timeout check ${ms(hc.timeoutMs)}`,
    `    retries ${Math.max(0, plan.maxAttempts - 1)}`,
    '    option redispatch',
    '',
    'frontend lockstep',
    `    bind ${addr(plan.listen.host, plan.listen.port)}`,
    `    default_backend ${HAPROXY_BACKEND}`,
    '',
    `backend ${HAPROXY_BACKEND}`,
    `    balance ${plan.balance === 'least_connections' ? 'leastconn' : 'roundrobin'}`,
    `    cookie ${plan.cookieName} insert indirect nocache httponly`,
    `    option httpchk GET ${plan.healthPath}`,
    '    http-check expect status 200',
    `    default-server check inter ${ms(hc.intervalMs)} rise ${hc.rise} fall ${hc.fall}`,
    ...(hold ? [`    http-request lua.lockstep_hold if { req.cook(${plan.cookieName}) -m found }`] : []),
    ...plan.servers.map(
      (s) =>
        `    server ${s.name} ${addr(s.address, s.port)} cookie ${s.cookie} weight ${Math.min(256, Math.max(1, s.weight))}` +
        (s.maxConnections !== undefined ? ` maxconn ${s.maxConnections}` : ''),
    ),
    '',
  ];
  return lines.join('\n');
}

/**
 * The Lua action that holds a request pinned (by cookie) to a draining server until the server is
 * enabled and up again, or `holdMs` passed: HAProxy's own drain still sends pinned clients to the
 * server, which during a restart would fail them (or, with per-instance sessions, move them).
 * This is what Lockstep's own proxy does for a draining instance (proxy/drain.ts, HoldQueue).
 */
export function renderHoldLua(plan: HaproxyPlan): string {
  const map = plan.servers.map((s) => `  [${JSON.stringify(s.cookie)}] = ${JSON.stringify(s.name)},`).join('\n');
  return `-- Rendered by lockstep: hold requests pinned to a draining server (see proxy/haproxy/config.ts).
local servers = {
${map}
}
local HOLD_MS = ${Math.round(plan.holdMs)}
-- is_draining() answers 1/0 in HAProxy 2.6 (a boolean in later ones); 0 is true in Lua.
local function draining(sv)
  local d = sv:is_draining()
  return d == true or d == 1
end
local function is_up(sv)
  local st = sv:get_stats()["status"] or ""
  return string.sub(st, 1, 2) == "UP"
end
core.register_action("lockstep_hold", { "http-req" }, function(txn)
  local name = servers[txn.sf:req_cook(${JSON.stringify(plan.cookieName)})]
  if name == nil then return end
  local be = core.backends[${JSON.stringify(HAPROXY_BACKEND)}]
  local sv = be and be.servers[name]
  if sv == nil then return end
  local waited = 0
  while waited < HOLD_MS and (draining(sv) or (waited > 0 and not is_up(sv))) do
    core.msleep(50)
    waited = waited + 50
  end
end, 0)
`;
}

/**
 * Write haproxy.cfg and hold.lua into the plan's run dir (created, mode 0700): both are written
 * beside their final names, the config is checked with `validate` (see validateHaproxyConfig), and
 * only then are both renamed into place, so a rejected config never replaces the running one.
 * @returns the config file's path.
 * @throws whatever `validate` throws (the final files are then unchanged; the candidates are removed).
 */
export function writeHaproxyConfig(plan: HaproxyPlan, validate: (file: string) => void = () => undefined): string {
  const p = haproxyPaths(plan.runDir);
  mkdirSync(plan.runDir, { recursive: true, mode: 0o700 });
  // The candidate config loads the candidate Lua file, so `haproxy -c` checks the pair.
  const candidate = { ...plan, luaFile: `${p.lua}.new` };
  writeFileSync(candidate.luaFile, renderHoldLua(plan), { mode: 0o600 });
  writeFileSync(`${p.config}.new`, renderHaproxyConfig(plan, candidate.luaFile), { mode: 0o600 });
  try {
    validate(`${p.config}.new`);
  } catch (e) {
    rmSync(candidate.luaFile, { force: true });
    rmSync(`${p.config}.new`, { force: true });
    throw e;
  }
  renameSync(candidate.luaFile, p.lua);
  writeFileSync(`${p.config}.new`, renderHaproxyConfig(plan), { mode: 0o600 });
  renameSync(`${p.config}.new`, p.config);
  return p.config;
}

/**
 * Check a config file with `haproxy -c -f <file>`.
 * @param bin the haproxy program. @param file the config file.
 * @throws ConfigError (exit 2) with haproxy's own message, naming the file, when the check fails or
 *   the program cannot be run.
 */
export function validateHaproxyConfig(bin: string, file: string): void {
  const r = spawnSync(bin, ['-c', '-f', file], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) {
    throw new ConfigError(`proxy.engine haproxy: cannot run ${bin} (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}); install haproxy or set proxy.haproxy.bin`, {
      field: 'proxy.haproxy.bin',
    });
  }
  if (r.status !== 0) {
    const why = `${r.stderr}${r.stdout}`.trim().split('\n').filter((l) => !l.includes('[NOTICE]')).slice(0, 12).join('\n');
    throw new ConfigError(`proxy.engine haproxy: ${file} is not a valid HAProxy configuration (haproxy -c exit ${r.status}):\n${why}`, { file });
  }
}
