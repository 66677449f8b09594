// The proxy's control plane beyond one box and one process lifetime (issue 10 item 4): the admin API
// over TLS on a non-127.0.0.1 address, reached by the deployer's real admin client with a CA file;
// plain HTTP off loopback refused at config load; drain/disable decisions restored after a restart of
// the real proxy, in one process and with 2 workers. Addresses: 127.0.12.x only (this file's base).
// The throwaway CA and certificates are made with openssl in a temp dir at test time.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.ts';
import { isLoopbackHost } from '../../config/loopback.ts';
import { loadInventory, parseInventory } from '../../config/inventory.ts';
import { ProxyAdminClient, ProxyAdminError, proxyClientFromInventory } from '../../deployer/balancer/admin-client.ts';
import { ProxyConfigError, resolveProxyConfig } from '../../proxy/config.ts';
import { ADMIN_STATE_FILE } from '../../proxy/control.ts';
import { startProxy, type RunningProxy } from '../../proxy/index.ts';
import { proxyConfigFromInventory, upstreamsFromInventory } from '../../proxy/inventory-config.ts';
import { ADMIN_TOKEN, AFFINITY_SECRET, request, servedBy, startUpstream, waitFor, type TestUpstream } from './helpers.ts';

const ADMIN_HOST = '127.0.12.1';
const UPSTREAM_HOST = '127.0.12.2';
const ENV = { LOCKSTEP_ADMIN_TOKEN: ADMIN_TOKEN, LOCKSTEP_AFFINITY_SECRET: AFFINITY_SECRET };

let dir: string;
let upstreams: TestUpstream[] = [];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA (`<name>-ca.crt`) and, signed by it, a server certificate for `ip` (`<name>.crt`, `<name>.key`). */
function makeCertificates(name: string, ip: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', `${name}-ca.key`, '-out', `${name}-ca.crt`, '-days', '2', '-subj', `/CN=${name} test CA`]);
  openssl(['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${ip}`]);
  writeFileSync(join(dir, `${name}.ext`), `subjectAltName=IP:${ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${name}-ca.crt`, '-CAkey', `${name}-ca.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`]);
}

/** An inventory whose instances are the upstreams (local transport, app on 127.0.12.2). @returns its path. */
function writeInventory(file: string, proxyLines: string[]): string {
  const instances = upstreams
    .map((u) => `  - { name: ${u.name}, transport: local, deploy_to: fleet/${u.name}, app_address: ${UPSTREAM_HOST}, app_port: ${new URL(u.url).port} }`)
    .join('\n');
  writeFileSync(
    join(dir, file),
    `app:
  build: { command: "true", output: dist }
  service: { start: "true", stop: "true", restart: "true" }
proxy:
${proxyLines.map((l) => `  ${l}`).join('\n')}
  health_check: { interval_ms: 50, timeout_ms: 1000, rise: 1, fall: 2 }
instances:
${instances}
`,
  );
  return join(dir, file);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-control-plane-'));
  makeCertificates('admin', ADMIN_HOST);
  makeCertificates('other', ADMIN_HOST);
  upstreams = await Promise.all(['i1', 'i2', 'i3'].map((n) => startUpstream(n, 0, UPSTREAM_HOST)));
});

afterAll(async () => {
  await Promise.all(upstreams.map((u) => u.close()));
});

describe('what counts as loopback', () => {
  it('the whole of 127.0.0.0/8, ::1 and localhost; not 0.0.0.0, ::, other addresses or names', () => {
    for (const h of ['127.0.0.1', '127.0.12.1', '127.255.255.254', '::1', '[::1]', '::ffff:127.0.12.1', 'localhost']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.1', '128.0.0.1', '::ffff:10.0.0.1', 'proxy.internal', 'localhost.evil.example']) expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe('plain HTTP admin off loopback is a config error', () => {
  it('at inventory load (exit 2, naming proxy.admin_listen and the fix), and in the proxy library', () => {
    const err = (() => {
      try {
        parseInventory(readFileSync(writeInventory('plain.yaml', ['admin_listen: 10.0.0.5:8443']), 'utf8'), join(dir, 'plain.yaml'));
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(2);
    expect((err as Error).message).toContain('field "proxy.admin_listen"');
    expect((err as Error).message).toContain('proxy.admin_tls');

    // The deployer never sends the token in clear to another machine either.
    expect(() => loadInventory(writeInventory('url.yaml', ['admin_url: http://10.0.0.5:8081']))).toThrow(/field "proxy.admin_url".*https:\/\//s);
    // With TLS the same address is accepted.
    expect(loadInventory(writeInventory('tls.yaml', ['admin_listen: 0.0.0.0:8443', 'admin_tls: { cert_file: admin.crt, key_file: admin.key }'])).proxy?.admin_tls?.cert_file).toBe(join(dir, 'admin.crt'));

    const base = { listen: { host: '127.0.0.1', port: 0 }, adminToken: ADMIN_TOKEN, affinitySecret: AFFINITY_SECRET, upstreams: [] };
    expect(() => resolveProxyConfig({ ...base, adminListen: { host: '0.0.0.0', port: 0 } })).toThrow(ProxyConfigError);
    expect(() => resolveProxyConfig({ ...base, adminListen: { host: '0.0.0.0', port: 0 }, adminTls: { certFile: 'c', keyFile: 'k' } })).not.toThrow();
    expect(() => resolveProxyConfig({ ...base, adminListen: { host: ADMIN_HOST, port: 0 } })).not.toThrow();
  });
});

describe('admin API over TLS, reached by the deployer admin client', () => {
  let proxy: RunningProxy | undefined;
  afterAll(async () => proxy?.close());

  it('verifies the certificate with the inventory CA, refuses an unknown CA, and refuses a token in the URL', async () => {
    const file = writeInventory('remote.yaml', [
      'listen: 127.0.12.1:0',
      `admin_listen: ${ADMIN_HOST}:4101`,
      'admin_tls: { cert_file: admin.crt, key_file: admin.key }',
      'admin_ca_file: admin-ca.crt',
      'state_dir: state-remote',
    ]);
    const inventory = loadInventory(file);
    proxy = await startProxy(proxyConfigFromInventory(inventory, ENV));
    expect(proxy.adminUrl).toBe(`https://${ADMIN_HOST}:4101`);

    const client = proxyClientFromInventory(inventory, ENV);
    expect(client.adminUrl).toBe(`https://${ADMIN_HOST}:4101`);
    expect((await client.listInstances()).map((i) => i.name)).toEqual(['i1', 'i2', 'i3']);
    expect(await client.disable('i1')).toMatchObject({ name: 'i1', state: 'disabled' });
    expect(await client.enable('i1')).toMatchObject({ name: 'i1', state: 'enabled' });
    await client.close();

    // Same URL, certificates checked against the system CAs or another CA: refused, and said why.
    for (const other of [new ProxyAdminClient(proxy.adminUrl, ADMIN_TOKEN), new ProxyAdminClient(proxy.adminUrl, ADMIN_TOKEN, { ca: readFileSync(join(dir, 'other-ca.crt')) })]) {
      const e = await other.listInstances().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ProxyAdminError);
      expect((e as Error).message).toContain('proxy.admin_ca_file');
      await other.close();
    }

    // Plain HTTP to the TLS listener gets no admin answer.
    await expect(request(`http://${ADMIN_HOST}:4101/admin/instances`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).rejects.toThrow();

    // The token in the query string: 401, even next to a valid header.
    const https = await import('node:https');
    const ca = readFileSync(join(dir, 'admin-ca.crt'));
    const get = (path: string, headers: Record<string, string>): Promise<number> =>
      new Promise((resolve, reject) => {
        https.get(`${proxy!.adminUrl}${path}`, { ca, headers, agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
    const bearer = { authorization: `Bearer ${ADMIN_TOKEN}` };
    expect(await get('/admin/instances', bearer)).toBe(200);
    expect(await get(`/admin/instances?token=${ADMIN_TOKEN}`, {})).toBe(401);
    expect(await get(`/admin/instances?token=${ADMIN_TOKEN}`, bearer)).toBe(401);
    expect(await get(`/admin/instances?x=${ADMIN_TOKEN}`, bearer)).toBe(401);
    expect(await get('/admin/instances?access_token=nope', bearer)).toBe(401);
  });
});

describe.each([1, 2])('drain and disable survive a restart of the proxy (workers: %i)', (workers) => {
  let proxy: RunningProxy | undefined;
  afterAll(async () => proxy?.close());

  it('an instance disabled stays disabled, one draining is restored draining; enable clears the file', async () => {
    const file = writeInventory(`restart-${workers}.yaml`, ['listen: 127.0.12.1:0', `admin_listen: ${ADMIN_HOST}:0`, `state_dir: state-${workers}`]);
    const inventory = loadInventory(file);
    const start = async (): Promise<{ p: RunningProxy; client: ProxyAdminClient }> => {
      const p = await startProxy(proxyConfigFromInventory(inventory, ENV), { workers, reloadSource: () => upstreamsFromInventory(loadInventory(file)) });
      return { p, client: new ProxyAdminClient(p.adminUrl, ADMIN_TOKEN, { timeoutMs: 20_000 }) };
    };
    let { p, client } = await start();
    proxy = p;
    await client.disable('i1');
    await client.drain('i2');
    const saved = JSON.parse(readFileSync(join(dir, `state-${workers}`, ADMIN_STATE_FILE), 'utf8')) as { instances: Record<string, string> };
    expect(saved.instances).toEqual({ i1: 'disabled', i2: 'draining' });

    await p.close();
    ({ p, client } = await start());
    proxy = p;
    const states = Object.fromEntries((await client.listInstances()).map((i) => [i.name, i.state]));
    expect(states).toEqual({ i1: 'disabled', i2: 'draining', i3: 'enabled' });
    // New work goes to i3 only, from every worker.
    await waitFor('i3 healthy', async () => (await client.listInstances()).find((i) => i.name === 'i3')?.healthy === true, 400, 50);
    const seen = new Set<string>();
    for (let n = 0; n < 12; n++) seen.add(servedBy(await request(`${p.url}/x`)));
    expect([...seen]).toEqual(['i3']);

    await client.enable('i1');
    await client.enable('i2');
    expect(JSON.parse(readFileSync(join(dir, `state-${workers}`, ADMIN_STATE_FILE), 'utf8')).instances).toEqual({});
    await p.close();
    proxy = undefined;
  }, 120_000);
});

describe('a damaged state file', () => {
  it('stops the proxy from starting, naming the file and what to do', async () => {
    const file = writeInventory('damaged.yaml', ['listen: 127.0.12.1:0', `admin_listen: ${ADMIN_HOST}:0`, 'state_dir: state-damaged']);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'state-damaged'));
    writeFileSync(join(dir, 'state-damaged', ADMIN_STATE_FILE), '{"version":1,"instances":{"i1":"dis');
    const e = await startProxy(proxyConfigFromInventory(loadInventory(file), ENV)).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ProxyConfigError);
    expect((e as Error).message).toContain(join(dir, 'state-damaged', ADMIN_STATE_FILE));
    expect((e as Error).message).toContain('delete it');
  });
});
