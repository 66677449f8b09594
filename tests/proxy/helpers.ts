/**
 * Test helpers for the proxy: real upstream HTTP servers on 127.0.0.1 random ports, a plain HTTP
 * client without pooling (so each request's headers are exactly what the proxy sent), and a proxy
 * started with fast health checks. No mocks.
 */
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe } from 'vitest';
import type { AddressInfo } from 'node:net';
import { startProxy, type ProxyConfig, type RunningProxy } from '../../proxy/index.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';
export const AFFINITY_SECRET = 'test-affinity-secret-0123456789abcdef';

/** Every forwarding engine; the behaviour tests run once per engine. */
export const ENGINES = ['undici', 'http-proxy-3'] as const;
let engine: (typeof ENGINES)[number] = 'undici';
/** Select the engine `startTestProxy` uses (call in beforeEach). */
/**
 * Close a test's proxy and upstreams (either may be absent).
 * @returns the cleared values, to assign back: `[proxy, upstreams] = await closeAll(proxy, upstreams)`.
 */
export async function closeAll(proxy: RunningProxy | undefined, upstreams: TestUpstream[]): Promise<[undefined, TestUpstream[]]> {
  await proxy?.close();
  await Promise.all(upstreams.map((u) => u.close()));
  return [undefined, []];
}

/** Run a suite once per forwarding engine (`describe.each(ENGINES)` with the engine selected). */
export function forEachEngine(suite: () => void): void {
  describe.each(ENGINES)('engine %s', (e) => {
    beforeEach(() => useEngine(e));
    suite();
  });
}

export function useEngine(e: (typeof ENGINES)[number]): void {
  engine = e;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface TestUpstream {
  name: string;
  url: string;
  server: http.Server;
  /** Requests served, health checks excluded. */
  hits: number;
  /** What `/healthz` answers: 200 when true, 503 when false. */
  healthy: boolean;
  /** Last request's headers (health checks excluded). */
  lastHeaders: http.IncomingHttpHeaders | null;
  /** Replace the handler for non-health requests. */
  handler: Handler;
  close(): Promise<void>;
}

function defaultHandler(u: TestUpstream): Handler {
  return (req, res) => {
    const body = JSON.stringify({ instance: u.name, path: req.url, headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
}

/**
 * Start an upstream on `host` (default 127.0.0.1) with a random port. `/healthz` follows `healthy`;
 * everything else goes to `handler` (default: JSON with the instance name, path and request headers).
 */
export async function startUpstream(name: string, port = 0, host = '127.0.0.1'): Promise<TestUpstream> {
  const u = { name, hits: 0, healthy: true, lastHeaders: null } as unknown as TestUpstream;
  u.handler = defaultHandler(u);
  u.server = http.createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(u.healthy ? 200 : 503, { 'content-length': 0 });
      res.end();
      return;
    }
    u.hits++;
    u.lastHeaders = req.headers;
    u.handler(req, res);
  });
  // Like the reference app: keep-alive longer than the proxy's idle timeout.
  u.server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve) => u.server.listen(port, host, resolve));
  u.url = `http://${host}:${(u.server.address() as AddressInfo).port}`;
  // Upgraded (WebSocket) sockets are not closed by closeAllConnections: track every socket.
  const sockets = new Set<import('node:net').Socket>();
  u.server.on('connection', (s: import('node:net').Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  u.close = () =>
    new Promise<void>((resolve) => {
      u.server.close(() => resolve());
      u.server.closeAllConnections();
      for (const s of sockets) s.destroy();
    });
  return u;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/** One request on a fresh connection. Resolves with the whole reply; rejects on a socket error. */
export function request(
  url: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** `request` and parse the JSON body. */
export async function requestJson<T = Record<string, unknown>>(
  url: string,
  options: Parameters<typeof request>[1] = {},
): Promise<Reply & { json: T }> {
  const r = await request(url, options);
  return { ...r, json: JSON.parse(r.body) as T };
}

/** Admin API call with the test token (or `token`). */
export function admin(proxy: RunningProxy, method: string, path: string, token: string | null = ADMIN_TOKEN): Promise<Reply> {
  return request(`${proxy.adminUrl}${path}`, { method, headers: token === null ? {} : { authorization: `Bearer ${token}` } });
}

/** Poll `check` every `intervalMs`, at most `tries` times; throws with `what` when it never holds. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, tries = 200, intervalMs = 25): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

/** Start a proxy on random loopback ports in front of `upstreams`, with fast health checks. */
export function startTestProxy(
  upstreams: TestUpstream[],
  overrides: Partial<ProxyConfig> = {},
  options: { workers?: number } = {},
): Promise<RunningProxy> {
  return startProxy({
    listen: { host: '127.0.0.1', port: 0 },
    adminListen: { host: '127.0.0.1', port: 0 },
    adminToken: ADMIN_TOKEN,
    affinitySecret: AFFINITY_SECRET,
    upstreams: upstreams.map((u) => ({ name: u.name, url: u.url })),
    healthCheck: { intervalMs: 30, timeoutMs: 500, rise: 2, fall: 2 },
    engine,
    ...overrides,
  }, options);
}

/** The `name=value` of the affinity cookie set by a reply, or undefined. */
export function affinityCookie(reply: Reply, cookieName = 'lockstep_affinity'): string | undefined {
  const cookies = reply.headers['set-cookie'] ?? [];
  const c = cookies.find((s) => s.startsWith(`${cookieName}=`));
  return c?.split(';')[0];
}

/** Instance that answered (default upstream handler). */
export function servedBy(reply: Reply): string {
  return (JSON.parse(reply.body) as { instance: string }).instance;
}

/** An inventory for `lockstep proxy` in `dir`: local instances at the upstreams' ports, fast health checks. @returns its path. */
export function writeProxyInventory(dir: string, ups: TestUpstream[]): string {
  const file = join(dir, 'inventory.yaml');
  const instances = ups.map((u) => `  - { name: ${u.name}, transport: local, deploy_to: fleet/${u.name}, app_port: ${new URL(u.url).port} }`).join('\n');
  writeFileSync(
    file,
    `app:
  build: { command: "true", output: dist }
  service: { start: "true", stop: "true", restart: "true" }
proxy:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  health_check: { interval_ms: 50, timeout_ms: 500, rise: 1, fall: 1 }
instances:
${instances}
`,
  );
  return file;
}
