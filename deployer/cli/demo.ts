/**
 * `lockstep demo`: the main job on one machine. Starts the proxy for the inventory's local
 * fleet, builds once, deploys through the proxy, verifies parity and session isolation, and
 * prints the URL. With --once (or when CI is set) it then stops everything it started. With
 * --redis it first starts a throw-away redis-server on loopback and runs the fleet with shared
 * sessions (`app.session_store: redis`), and stops it at the end.
 */
import { renderReportTable } from '../checks/index.ts';
import { deploy, type DeployReport } from '../rollout/deploy.ts';
import { openFleet } from '../fleet/fleet.ts';
import type { Inventory } from '../../config/inventory.ts';
import { ConfigError } from '../../config/errors.ts';
import { proxyControlFor } from '../balancer/control.ts';
import { verifyFleet, type VerifyResult } from '../checks/verify.ts';
import { runProxyCommand } from '../../proxy/command.ts';
import type { RunningEngine } from '../../proxy/command.ts';
import { renderDeployReportText } from './report-text.ts';
import { startRedisServer, type RunningRedis } from './redis-server.ts';
import { parseHostPort } from '../../config/proxy-section.ts';

export interface DemoOptions {
  once: boolean;
  /**
   * Start a throw-away redis-server on this loopback `host:port` and run the fleet with
   * `app.session_store: redis` against it (stopped at the end). Undefined: the inventory's store.
   */
  redis?: string;
  print: (line: string) => void;
  progress: (instance: string, line: string) => void;
  /** Called once with the deploy report, the verification and the URLs (`demo --json`). */
  onResult?: (result: DemoResult) => void;
}

/** What `demo --json` prints: one JSON document. */
export interface DemoResult {
  ok: boolean;
  exitCode: number;
  url: string;
  adminUrl: string;
  deploy: DeployReport;
  verification: VerifyResult | null;
}

/**
 * The inventory with the proxy's user port and admin port replaced (`demo --port/--admin-port`),
 * each on the host of the inventory's own address. @throws ConfigError for a port outside 1..65535.
 */
export function withDemoPorts(inventory: Inventory, ports: { port?: string; adminPort?: string }): Inventory {
  if (!inventory.proxy || (ports.port === undefined && ports.adminPort === undefined)) return inventory;
  const replace = (listen: string, value: string | undefined, option: string): string => {
    if (value === undefined) return listen;
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > 65535) throw new ConfigError(`${option}: "${value}" is not a port (1-65535)`, { field: option });
    return `${listen.slice(0, listen.lastIndexOf(':'))}:${value}`;
  };
  return {
    ...inventory,
    proxy: { ...inventory.proxy, listen: replace(inventory.proxy.listen, ports.port, '--port'), admin_listen: replace(inventory.proxy.admin_listen, ports.adminPort, '--admin-port') },
  };
}

/** Stop the app on every instance (best effort; instances that never ran are skipped). */
async function stopApps(inventory: Inventory): Promise<void> {
  const fleet = openFleet(inventory);
  try {
    await fleet.each((o) => o.stopApp());
  } finally {
    await fleet.close();
  }
}

/**
 * Run the demo. @returns the exit code: 0 when deploy and verification passed, 1 when a check
 * failed, 3 when the deploy failed.
 * @throws ConfigError when the inventory has no proxy section or uses SSH instances.
 */
export async function runDemo(inventory: Inventory, options: DemoOptions): Promise<number> {
  if (!inventory.proxy) throw new ConfigError(`${inventory.file}: the demo needs a proxy section`, { file: inventory.file, field: 'proxy' });
  const { print } = options;
  let redis: RunningRedis | null = null;
  if (options.redis !== undefined) {
    const { host, port } = parseHostPort(options.redis, '--redis');
    if (!(host.startsWith('127.') || host === 'localhost' || host === '::1')) throw new ConfigError(`--redis ${options.redis}: the demo's Redis listens on loopback only (e.g. 127.0.0.1:6390)`);
    redis = await startRedisServer(host, port);
    print(`Started redis-server on ${host}:${port} (pid ${redis.proc.pid}, no persistence): sessions are shared by every instance.`);
    inventory = { ...inventory, app: { ...inventory.app, session_store: 'redis', redis_url: redis.url } };
  }
  try {
    return await runDemoFleet(inventory, options);
  } finally {
    if (redis) {
      await redis.stop();
      print('Stopped the demo\'s redis-server.');
    }
  }
}

async function runDemoFleet(inventory: Inventory, options: DemoOptions): Promise<number> {
  const { print, progress } = options;
  // A previous demo killed hard may have left apps on our ports: stop them first.
  await stopApps(inventory).catch(() => {});

  const stopProxy = new AbortController();
  let started!: (p: RunningEngine) => void;
  const proxyUp = new Promise<RunningEngine>((resolve) => (started = resolve));
  const proxyDone = runProxyCommand(inventory, {
    signal: stopProxy.signal,
    onEngineStarted: (p) => started(p),
    print: (l) => print(`[proxy] ${l}`),
    logLevel: process.env.LOCKSTEP_LOG ?? 'warn',
  });
  const proxy = await Promise.race([proxyUp, proxyDone.then(() => null)]);
  if (!proxy) return 3;

  let code = 3;
  try {
    const control = await proxyControlFor(inventory, progress);
    const report = await deploy(inventory, { proxy: control, progress, message: 'demo' });
    print('');
    print(renderDeployReportText(report));
    if (report.ok) {
      const v = await verifyFleet(inventory, { expected: { release: report.release, digest: report.digest }, proxyUrl: proxy.url });
      print('');
      print(renderReportTable(v.reports));
      code = v.ok ? 0 : 1;
      print('');
      print(v.ok ? `PASS: ${inventory.instances.length} instances serve ${report.release}; sessions are isolated (${inventory.app.session_store === 'redis' ? 'shared in Redis' : 'per instance'}).` : 'FAIL: see the checks above.');
      options.onResult?.({ ok: v.ok, exitCode: code, url: proxy.url, adminUrl: proxy.adminUrl, deploy: report, verification: v });
    } else options.onResult?.({ ok: false, exitCode: code, url: proxy.url, adminUrl: proxy.adminUrl, deploy: report, verification: null });
    if (options.once) return code;
    print(`Open ${proxy.url}/ in a browser (admin API: ${proxy.adminUrl}). Serving until Ctrl-C.`);
    await proxyDone;
    return code;
  } finally {
    stopProxy.abort();
    await proxyDone.catch(() => 0);
    await stopApps(inventory).catch(() => {});
    print('Stopped the proxy and every instance the demo started.');
  }
}
