import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import {
  checkSessionIsolation,
  isolationInputFromInventory,
  type ForgeryVector,
  type IsolationReport,
} from '../../deployer/checks/isolation.ts';
import { renderReportTable } from '../../deployer/checks/report.ts';
import { listen, startFakeApp, type AppFlaw, type RunningServer } from './fake-app.ts';
import { AFFINITY_COOKIE, startTestProxy } from './test-proxy.ts';

const CHECKS = {
  upload_paths: ['/api/upload', '/api/v1/data-analysis/upload'],
  upload_field: 'file',
  session_path: '/api/session',
  concurrent_sessions: 5,
};

const running: RunningServer[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

/** Two app instances (same flaw) behind the test proxy; returns the proxy URL. */
async function fleetBehindProxy(flaw: AppFlaw, trusts?: ForgeryVector, cookieName?: string): Promise<string> {
  const apps = await Promise.all(
    ['instance-1', 'instance-2'].map((instance) =>
      startFakeApp({ instance, release: 'r', digest: 'd', flaw, trusts, cookieName }),
    ),
  );
  running.push(...apps);
  const proxy = await startTestProxy(apps.map((a) => a.url));
  running.push(proxy);
  return proxy.url;
}

function statusOf(report: IsolationReport, check: string, subject?: string): string[] {
  return report.checks.filter((c) => c.check === check && (subject === undefined || c.subject === subject)).map((c) => c.status);
}

function failures(report: IsolationReport): string[] {
  return report.checks.filter((c) => c.status === 'fail').map((c) => `${c.check} | ${c.subject}`);
}

describe('checkSessionIsolation', () => {
  it('passes against an app that makes a fresh UUIDv4 per upload and trusts only its cookie', async () => {
    const proxyUrl = await fleetBehindProxy('none');
    const report = await checkSessionIsolation(isolationInputFromInventory(CHECKS, proxyUrl, { affinityCookie: AFFINITY_COOKIE }));
    expect(failures(report)).toEqual([]);
    expect(report.checks.every((c) => c.status === 'pass')).toBe(true);
    expect(report.ok).toBe(true);
    expect(new Set(report.sessions.map((s) => s.sessionId)).size).toBe(5);
    // Round robin over both upload paths, and every (path, place) forgery was tried.
    expect(report.sessions.map((s) => s.uploadPath)).toEqual([
      '/api/upload', '/api/v1/data-analysis/upload', '/api/upload', '/api/v1/data-analysis/upload', '/api/upload',
    ]);
    expect(report.forgeries).toHaveLength(8);
    expect(report.forgeries.every((f) => f.sawVictimData === false)).toBe(true);
    expect(report.sessions[0]!.cookies.sort()).toEqual([AFFINITY_COOKIE, 'sid']);
  });

  it('also passes without knowing the affinity cookie (the session cookie holds the id)', async () => {
    const proxyUrl = await fleetBehindProxy('none');
    const report = await checkSessionIsolation(isolationInputFromInventory({ ...CHECKS, concurrent_sessions: 3 }, proxyUrl));
    expect(failures(report)).toEqual([]);
    expect(report.sessions).toHaveLength(3);
  });

  it('does not mistake a session cookie literally named session_id for a forgery', async () => {
    const proxyUrl = await fleetBehindProxy('none', undefined, 'session_id');
    for (const affinityCookie of [AFFINITY_COOKIE, undefined]) {
      const report = await checkSessionIsolation(isolationInputFromInventory(CHECKS, proxyUrl, { affinityCookie }));
      expect(failures(report)).toEqual([]);
    }
  });

  it('fails when a session read trusts an id in the query or a header', async () => {
    const proxyUrl = await fleetBehindProxy('reads-client-session-id');
    const report = await checkSessionIsolation(isolationInputFromInventory(CHECKS, proxyUrl, { affinityCookie: AFFINITY_COOKIE }));
    expect(failures(report)).toEqual([
      'forged session_id ignored | /api/upload (query)',
      'forged session_id ignored | /api/upload (header)',
      'forged session_id ignored | /api/v1/data-analysis/upload (query)',
      'forged session_id ignored | /api/v1/data-analysis/upload (header)',
      'no session cookie, no data | all sessions',
    ]);
    const noCookie = report.checks.find((c) => c.check === 'no session cookie, no data')!;
    expect(noCookie.found).toBe(
      "no session cookie, #1's id in the query: HTTP 200 with data of #1; no session cookie, #1's id in the header: HTTP 200 with data of #1",
    );
  });

  it('fails the forged-id checks against an app that trusts a session_id form field', async () => {
    const proxyUrl = await fleetBehindProxy('trusts-client-session-id', 'form');
    const report = await checkSessionIsolation(isolationInputFromInventory(CHECKS, proxyUrl, { affinityCookie: AFFINITY_COOKIE }));
    expect(report.ok).toBe(false);
    expect(failures(report)).toEqual([
      'forged session_id ignored | /api/upload (form)',
      'forged session_id ignored | /api/v1/data-analysis/upload (form)',
      expect.stringMatching(/^victim session untouched by forgeries \| #1 \(/),
    ]);
    const victimId = report.sessions[0]!.sessionId!;
    const form = report.checks.find((c) => c.subject === '/api/upload (form)')!;
    expect(form.found).toContain(`got the forged id ${victimId} back`);
    expect(form.found).toContain("its session shows #1's data");
    // The other places a forged id can hide are ignored by this app, and say so.
    expect(statusOf(report, 'forged session_id ignored', '/api/upload (header)')).toEqual(['pass']);
    expect(renderReportTable([report])).toMatch(/forged session_id ignored\s+\/api\/upload \(form\)\s+FAIL\s+expected a fresh UUIDv4/);
  });

  it.each(['query', 'header', 'cookie'] as const)('fails exactly the %s forgery against an app that trusts it there', async (vector) => {
    const proxyUrl = await fleetBehindProxy('trusts-client-session-id', vector);
    const report = await checkSessionIsolation(isolationInputFromInventory(CHECKS, proxyUrl, { affinityCookie: AFFINITY_COOKIE }));
    expect(failures(report)).toEqual([
      `forged session_id ignored | /api/upload (${vector})`,
      `forged session_id ignored | /api/v1/data-analysis/upload (${vector})`,
      expect.stringMatching(/^victim session untouched by forgeries/),
    ]);
  });

  it('fails distinct-ids and marker isolation against an app with one shared session', async () => {
    const proxyUrl = await fleetBehindProxy('single-shared-session');
    const report = await checkSessionIsolation(isolationInputFromInventory(CHECKS, proxyUrl, { affinityCookie: AFFINITY_COOKIE }));
    expect(report.ok).toBe(false);
    const f = failures(report);
    expect(f).toContain('distinct session ids | all sessions');
    expect(f).toContain("no session reads another's data | all sessions");
    const distinct = report.checks.find((c) => c.check === 'distinct session ids')!;
    // Two instances, each with its own shared session: at most 2 ids for 5 clients.
    expect(distinct.found).toMatch(/^[12] distinct; .* shared by #\d/);
    const others = report.checks.find((c) => c.check === "no session reads another's data")!;
    expect(others.found).toMatch(/#1 \(.*\) sees data of #\d/);
  });

  it('fails when the app answers a session read that carries no session cookie', async () => {
    const proxyUrl = await fleetBehindProxy('reads-without-cookie');
    const report = await checkSessionIsolation(isolationInputFromInventory(CHECKS, proxyUrl, { affinityCookie: AFFINITY_COOKIE }));
    expect(failures(report)).toEqual(['no session cookie, no data | all sessions']);
    const c = report.checks.find((x) => x.check === 'no session cookie, no data')!;
    expect(c.found).toMatch(/without session cookie: HTTP 200 with data of #\d/);
  });

  it('reports an unreachable proxy as failures instead of throwing', async () => {
    const dead = await listen(http.createServer());
    await dead.close();
    const report = await checkSessionIsolation({
      ...isolationInputFromInventory({ ...CHECKS, concurrent_sessions: 2 }, dead.url),
      timeoutMs: 2_000,
    });
    expect(report.ok).toBe(false);
    const up = report.checks.find((c) => c.check === 'concurrent uploads succeed')!;
    expect(up.status).toBe('fail');
    expect(up.found).toMatch(/#1 \/api\/upload: ECONNREFUSED/);
    expect(statusOf(report, 'forged session_id ignored')).toEqual(['fail']);
    expect(statusOf(report, 'no session cookie, no data')).toEqual(['fail']);
  });
});
