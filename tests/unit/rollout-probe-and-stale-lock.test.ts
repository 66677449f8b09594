// Issue 12, items 6 and 10 (pure parts): which assets a page names, the probe's percentile and
// summary line, and how stale locks are judged for drift and status.
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { pageAssets, percentile, probeFailed, renderProbeLine, type ProbeFigures } from '../../deployer/checks/rollout-probe.ts';
import { addStaleLockItems, liveLockHeld, staleLockItem } from '../../deployer/drift/stale-lock.ts';
import { outOfRotation, rotationVerdict } from '../../deployer/fleet/rotation.ts';
import type { InstanceDrift } from '../../deployer/drift/types.ts';

const figures = (over: Partial<ProbeFigures> = {}): ProbeFigures => ({
  requests: 1204, failed: 0, pageLoads: 300, assetRequests: 800, asset404s: 0, sessionReads: 100, sessionsIntact: true,
  p50Ms: 3, p99Ms: 41, maxMs: 90, durationMs: 60_000, capped: false, failures: [], ...over,
});

describe('pageAssets', () => {
  it('lists same-origin script src and link href, resolved, deduplicated, in page order', () => {
    const html = `<!doctype html><html><head>
      <link rel="icon" href="data:," />
      <script type="module" crossorigin src="/assets/index-Ab12.js"></script>
      <link rel="modulepreload" crossorigin href="/assets/vendor-Cd34.js">
      <link rel=stylesheet href=assets/index-Ef56.css>
      <link rel="preconnect" href="https://fonts.example.com">
      <script src='/assets/index-Ab12.js?v=1&amp;x=2'></script>
      <script>inline()</script>
      <script src="/assets/index-Ab12.js"></script>
    </head></html>`;
    expect(pageAssets(html, 'http://127.0.0.1:8080/')).toEqual([
      'http://127.0.0.1:8080/assets/index-Ab12.js',
      'http://127.0.0.1:8080/assets/vendor-Cd34.js',
      'http://127.0.0.1:8080/assets/index-Ef56.css',
      'http://127.0.0.1:8080/assets/index-Ab12.js?v=1&x=2',
    ]);
  });

  it('finds nothing in a page without assets', () => {
    expect(pageAssets('<html><body>hello</body></html>', 'http://127.0.0.1:8080/')).toEqual([]);
  });
});

describe('probe figures', () => {
  it('percentile is the nearest rank', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 99)).toBe(99);
    expect(percentile(sorted, 50)).toBe(50);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 99)).toBeNull();
  });

  it('the summary line says what users saw', () => {
    expect(renderProbeLine(figures())).toBe('during the rollout: 1,204 requests, 0 failed, 0 asset 404s, p99 41 ms, sessions intact');
    expect(renderProbeLine(figures({ failed: 3, asset404s: 2, sessionsIntact: false, capped: true }), 'deploy')).toBe(
      'during the deploy: 1,204 requests, 3 failed, 2 asset 404s, p99 41 ms, SESSIONS LOST (probe stopped at its max_requests)',
    );
  });

  it('any failed request or a lost session fails the probe', () => {
    expect(probeFailed(figures())).toBe(false);
    expect(probeFailed(figures({ failed: 1 }))).toBe(true);
    expect(probeFailed(figures({ sessionsIntact: false }))).toBe(true);
    expect(probeFailed(figures({ sessionsIntact: null }))).toBe(false);
  });
});

describe('stale locks', () => {
  const now = Date.parse('2026-12-01T10:00:00Z');
  const ttl = 3_600_000;
  // A pid that cannot exist (above Linux's pid_max) on this machine: its holder is gone.
  const dead = { user: 'ana', machine: os.hostname(), pid: 99_999_999, time: '2026-12-01T09:59:00Z', release: 'R2' };
  const live = { user: 'ana', machine: os.hostname(), pid: process.pid, time: '2026-12-01T09:59:00Z', release: 'R2' };
  const old = { user: 'bo', machine: 'elsewhere', pid: 12, time: '2026-12-01T08:00:00Z', heartbeat: '2026-12-01T08:30:00Z' };

  it('only a live holder counts as a held lock', () => {
    expect(liveLockHeld([null, dead], ttl, now)).toBe(false);
    expect(liveLockHeld([old], ttl, now)).toBe(false);
    expect(liveLockHeld([dead, live], ttl, now)).toBe(true);
  });

  it('a stale holder becomes a stale-lock item naming holder, age and the recovery', () => {
    expect(staleLockItem(null, ttl, now)).toBeNull();
    expect(staleLockItem(live, ttl, now)).toBeNull();
    const item = staleLockItem(dead, ttl, now)!;
    expect(item.kind).toBe('stale-lock');
    expect(item.message).toContain(`ana@${os.hostname()} pid 99999999 (release R2), 60 s old: stale, holder process 99999999 on this machine is gone`);
    expect(item.message).toContain('`lockstep lock release --force`');
    expect(staleLockItem(old, ttl, now)!.detail).toMatchObject({ user: 'bo', age_s: 5400, recover: 'lockstep lock release --force' });
  });

  it('adds the item to checked rows only, and marks them drifted', () => {
    const row = (instance: string, lock: Record<string, unknown> | null, status: InstanceDrift['status'] = 'ok'): InstanceDrift => ({
      instance, status, current: { target: null, release: null, digest: null }, running: null, healthy: true, proxy: null, lock, items: [],
    });
    const rows = [row('a', dead), row('b', live), row('c', null), row('d', dead, 'unchecked')];
    addStaleLockItems(rows, ttl, now);
    expect(rows.map((r) => [r.instance, r.status, r.items.map((i) => i.kind)])).toEqual([
      ['a', 'drift', ['stale-lock']],
      ['b', 'ok', []],
      ['c', 'ok', []],
      ['d', 'unchecked', []],
    ]);
  });

  it('status: out of rotation under a stale lock is named; under a live lock or no lock it is not', () => {
    const proxy = (state: 'enabled' | 'draining' | 'disabled') => ({ state, healthy: true, inflight: 0 });
    const found = outOfRotation(
      [
        { instance: 'a', proxy: proxy('draining'), lock: dead },
        { instance: 'b', proxy: proxy('enabled'), lock: dead },
        { instance: 'c', proxy: proxy('draining'), lock: live },
        { instance: 'd', proxy: proxy('disabled'), lock: null },
      ],
      ttl,
      now,
    );
    expect(found.map((f) => [f.instance, f.state])).toEqual([['a', 'draining']]);
    expect(rotationVerdict(found)).toMatch(/^NOT IN PARITY: a is draining in the proxy under the STALE lock of ana@\S+ pid 99999999 .*lockstep lock release --force/);
  });
});
