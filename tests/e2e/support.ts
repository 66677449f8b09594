/**
 * End-to-end fixtures: real sshd hosts running the real app, the real proxy in front, and the
 * deployer driving them exactly as the CLI does.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadInventory, type Inventory } from '../../deployer/inventory.ts';
import { openFleet } from '../../deployer/fleet.ts';
import { startProxy, type RunningProxy } from '../../proxy/index.ts';
import { proxyConfigFromInventory } from '../../proxy/inventory-config.ts';
import { freePort, startSshHosts, type SshFleet } from '../helpers/sshd.ts';
import type { Manifest } from '../../deployer/manifest-types.ts';

export const repoRoot = resolve(import.meta.dirname, '..', '..');

export interface E2eFleet {
  ssh: SshFleet;
  inventory: Inventory;
  proxy?: RunningProxy;
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
 * (optionally) the real proxy in front on free loopback ports.
 */
export async function startE2eFleet(count: number, baseAddress: string, options: { proxy?: boolean; deploy?: Record<string, unknown> } = {}): Promise<E2eFleet> {
  const ssh = await startSshHosts(count, { baseAddress });
  const proxyPort = await freePort('127.0.0.1');
  const adminPort = await freePort('127.0.0.1');
  const file = ssh.writeInventory({
    app: realAppSection(join(ssh.dir, 'app-build')),
    deploy: { activation_timeout_ms: 20000, drain_timeout_ms: 5000, ...options.deploy },
    proxy: { listen: `127.0.0.1:${proxyPort}`, admin_listen: `127.0.0.1:${adminPort}`, health_check: { interval_ms: 200, timeout_ms: 1000, rise: 1, fall: 2 } },
  });
  const inventory = loadInventory(file);
  // Admin token and affinity secret come from files the proxy creates in the fleet's temp dir
  // (inventory proxy.admin_token_file), the same ones the deployer's admin client reads.
  const proxy = options.proxy === false ? undefined : await startProxy(proxyConfigFromInventory(inventory));
  return {
    ssh,
    inventory,
    proxy,
    async stop() {
      await proxy?.close();
      const fleet = openFleet(inventory);
      await fleet.each((o) => o.stopApp()).catch(() => {});
      await fleet.close();
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
