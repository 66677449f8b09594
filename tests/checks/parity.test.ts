import { afterEach, describe, expect, it } from 'vitest';
import { checkVersionParity, type ParityInstance, type ParityReport } from '../../deployer/checks/parity.ts';
import type { CheckResult } from '../../deployer/checks/types.ts';
import { renderReportTable } from '../../deployer/checks/report.ts';
import { computeDigest } from '../../deployer/build/digest.ts';
import type { Manifest, ManifestFile } from '../../deployer/build/manifest.ts';
import { listen, startFakeApp, type RunningServer } from './fake-app.ts';
import { startTestProxy } from './test-proxy.ts';
import http from 'node:http';

const FILES: ManifestFile[] = [
  { path: 'server.mjs', size: 10, mode: '644', sha256: 'a'.repeat(64) },
  { path: 'web/index.html', size: 20, mode: '644', sha256: 'b'.repeat(64) },
];
const DIGEST = computeDigest(FILES);
const RELEASE = `20261130T0802Z-${DIGEST.slice(0, 8)}`;
const OTHER_FILES: ManifestFile[] = [{ ...FILES[0]!, sha256: 'c'.repeat(64) }, FILES[1]!];
const OTHER_DIGEST = computeDigest(OTHER_FILES);

// Only the fields the check reads are typed: the rest of a manifest is the build's business.
type ManifestFields = Pick<Manifest, 'release' | 'digest' | 'files'> & Record<string, unknown>;

function manifest(overrides: Partial<ManifestFields> = {}): ManifestFields {
  return {
    schema: 1,
    release: RELEASE,
    digest: DIGEST,
    builtAt: '2026-11-30T08:03:00Z',
    files: FILES,
    ...overrides,
  };
}

const running: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

/** Three fake instances; `digests` overrides what an instance's /version reports. */
async function fleet(digests: Record<string, string> = {}): Promise<ParityInstance[]> {
  const names = ['instance-1', 'instance-2', 'instance-3'];
  const apps = await Promise.all(
    names.map((name) => startFakeApp({ instance: name, release: RELEASE, digest: digests[name] ?? DIGEST })),
  );
  running.push(...apps);
  return names.map((name, i) => ({ name, url: apps[i]!.url }));
}

async function proxyOver(instances: ParityInstance[]): Promise<string> {
  const proxy = await startTestProxy(instances.map((i) => i.url));
  running.push(proxy);
  return proxy.url;
}

/** A loopback URL where nothing listens (a port we bound and released). */
async function deadUrl(): Promise<string> {
  const s = await listen(http.createServer());
  await s.close();
  return s.url;
}

function byKeyOf(report: ParityReport): Record<string, CheckResult> {
  return Object.fromEntries(report.checks.map((c) => [`${c.check}/${c.subject}`, c]));
}

const onDisk = (manifests: Record<string, unknown> = {}) => async (inst: ParityInstance) =>
  manifests[inst.name] ?? manifest();

describe('checkVersionParity', () => {
  it('passes when every instance serves and holds the expected release', async () => {
    const instances = await fleet();
    const report = await checkVersionParity({
      instances,
      expected: { release: RELEASE, digest: DIGEST },
      proxyUrl: await proxyOver(instances),
      versionPath: '/version',
      readCurrentManifest: onDisk(),
    });
    expect(report.checks.filter((c) => c.status !== 'pass')).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.proxy).toMatchObject({ requests: 9, failed: 0, answeredBy: { 'instance-1': 3, 'instance-2': 3, 'instance-3': 3 } });
    expect(report.checks.map((c) => c.check)).toEqual([
      ...Array(3).fill('version (direct)'),
      ...Array(3).fill('manifest of current'),
      ...Array(3).fill('manifest file list'),
      'version (proxy)',
      'proxy reaches every instance',
    ]);
  });

  it('fails naming the instance that serves a different digest, directly and through the proxy', async () => {
    const instances = await fleet({ 'instance-2': OTHER_DIGEST });
    const report = await checkVersionParity({
      instances,
      expected: { release: RELEASE, digest: DIGEST },
      proxyUrl: await proxyOver(instances),
      readCurrentManifest: onDisk(),
    });
    expect(report.ok).toBe(false);
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed.map((c) => `${c.check}/${c.subject}`)).toEqual(['version (direct)/instance-2', 'version (proxy)/proxy']);
    expect(failed[0]!.found).toContain(OTHER_DIGEST);
    expect(failed[0]!.expected).toContain(DIGEST);
    expect(failed[1]!.found).toBe(`3/9 answers differ: instance-2: release ${RELEASE}, digest ${OTHER_DIGEST} x3`);
    const table = renderReportTable([report]);
    expect(table).toMatch(/version \(direct\)\s+instance-2\s+FAIL\s+expected .*found .*digest [0-9a-f]{12}…/);
  });

  it('fails when a manifest file list does not hash to its declared digest', async () => {
    const instances = await fleet();
    const report = await checkVersionParity({
      instances,
      expected: { release: RELEASE, digest: DIGEST },
      readCurrentManifest: onDisk({ 'instance-3': manifest({ files: OTHER_FILES }) }),
    });
    expect(report.ok).toBe(false);
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ check: 'manifest file list', subject: 'instance-3' });
    expect(failed[0]!.found).toBe(`file list hashes to ${OTHER_DIGEST}, manifest declares ${DIGEST}`);
    expect(report.instances[2]!.manifest.computedDigest).toBe(OTHER_DIGEST);
  });

  it('fails when the manifest of current is another release, or unreadable', async () => {
    const instances = await fleet();
    instances.push({ name: 'instance-4', url: instances[0]!.url });
    const report = await checkVersionParity({
      instances,
      expected: { release: RELEASE, digest: DIGEST },
      manifestTimeoutMs: 300,
      readCurrentManifest: async (inst) => {
        if (inst.name === 'instance-1') return manifest({ digest: OTHER_DIGEST, files: OTHER_FILES, release: 'old' });
        if (inst.name === 'instance-2') throw new Error('ENOENT: no such file /srv/app/current/manifest.json');
        if (inst.name === 'instance-4') return new Promise(() => {}); // a stalled SSH read
        return JSON.stringify(manifest());
      },
    });
    expect(byKeyOf(report)['manifest of current/instance-4']!.found).toBe('cannot read manifest of current: timed out after 300 ms');
    const byKey = byKeyOf(report);
    expect(byKey['manifest of current/instance-1']!.status).toBe('fail');
    expect(byKey['manifest of current/instance-1']!.found).toBe(`release old, digest ${OTHER_DIGEST}`);
    expect(byKey['manifest file list/instance-1']!.status).toBe('pass');
    expect(byKey['manifest of current/instance-2']!.status).toBe('fail');
    expect(byKey['manifest of current/instance-2']!.found).toContain('ENOENT');
    expect(byKey['manifest file list/instance-2']!.status).toBe('skip');
    expect(byKey['manifest of current/instance-3']!.status).toBe('pass');
    // No proxy given: the proxy rows are skipped, not failed.
    expect(byKey['version (proxy)/proxy']!.status).toBe('skip');
  });

  it('reports an unreachable instance and a dead proxy as failures instead of throwing', async () => {
    const instances = await fleet();
    instances[0] = { name: 'instance-1', url: await deadUrl() };
    const report = await checkVersionParity({
      instances,
      expected: { release: RELEASE, digest: DIGEST },
      proxyUrl: await deadUrl(),
      requestsThroughProxy: 2,
      timeoutMs: 2_000,
      readCurrentManifest: onDisk(),
    });
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed.map((c) => `${c.check}/${c.subject}`)).toEqual([
      'version (direct)/instance-1',
      'version (proxy)/proxy',
      'proxy reaches every instance/proxy',
    ]);
    expect(failed[0]!.found).toMatch(/no answer: ECONNREFUSED/);
    expect(failed[2]!.found).toContain('never answered: instance-1, instance-2, instance-3');
  });

  it('reports an instance that accepts but never answers as a timeout', async () => {
    const instances = await fleet();
    const hanging = await listen(http.createServer(() => {}));
    running.push(hanging);
    instances[1] = { name: 'instance-2', url: hanging.url };
    const report = await checkVersionParity({
      instances,
      expected: { release: RELEASE, digest: DIGEST },
      timeoutMs: 300,
      readCurrentManifest: onDisk(),
    });
    const failed = report.checks.filter((c) => c.status === 'fail');
    expect(failed.map((c) => `${c.check}/${c.subject}`)).toEqual(['version (direct)/instance-2']);
    expect(failed[0]!.found).toMatch(/^no answer: timed out after 300 ms /);
  });

  it('fails when the proxy never reaches an instance, or one answers under the wrong name', async () => {
    const instances = await fleet();
    const proxyUrl = await proxyOver(instances.slice(0, 2));
    const swapped = [instances[0]!, { name: 'instance-2', url: instances[2]!.url }, { name: 'instance-3', url: instances[1]!.url }];
    const report = await checkVersionParity({
      instances: swapped,
      expected: { release: RELEASE, digest: DIGEST },
      proxyUrl,
      readCurrentManifest: onDisk(),
    });
    const byKey = Object.fromEntries(report.checks.map((c) => [`${c.check}/${c.subject}`, c]));
    expect(byKey['version (direct)/instance-2']!.found).toContain('answers as instance "instance-3"');
    const reach = byKey['proxy reaches every instance/proxy']!;
    expect(reach.status).toBe('fail');
    // The proxy fronts instance-1 and the process that calls itself instance-2; we asked it 9 times.
    expect(reach.found).toBe('never answered: instance-3; answered by instance-1 x5, instance-2 x4');
  });
});
