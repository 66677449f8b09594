/**
 * Progress a person can watch (issue 11): phase durations per instance for the summary table,
 * heartbeat lines during long waits, the rollout announcement's validation and expiry on the
 * proxy, and `status` rows judged by the shared verdict (ssh down but app serving; a live lock).
 */
import { describe, expect, it } from 'vitest';
import { PhaseClock, renderPhaseSummary } from '../../deployer/cli/phases.ts';
import { withHeartbeat } from '../../deployer/rollout/heartbeat.ts';
import { statusVerdict } from '../../deployer/fleet/status-verdict.ts';
import type { InstanceStatus } from '../../deployer/fleet/status.ts';
import { RolloutBoard, parseRolloutBody } from '../../proxy/rollout-board.ts';

describe('phase summary', () => {
  it('times each phase until the next one (or `-`), sums repeats, and renders one row per instance', () => {
    const c = new PhaseClock();
    c.mark('web-1', 'upload', 0);
    c.mark('web-1', 'verify', 1000);
    c.mark('web-1', 'unpack', 1500);
    c.mark('web-1', 'verify', 2000);
    c.mark('web-1', '-', 2200); // waiting for its batch: not timed
    c.mark('web-1', 'gates', 9000);
    c.mark('web-2', 'drain', 100);
    const t = c.finish(9500);
    expect(Object.fromEntries(t.get('web-1')!)).toEqual({ upload: 1000, verify: 700, unpack: 500, gates: 500 });
    expect(Object.fromEntries(t.get('web-2')!)).toEqual({ drain: 9400 });
    const text = renderPhaseSummary(t);
    expect(text.split('\n')[0]).toMatch(/^instance\s+upload\s+verify\s+unpack\s+drain\s+gates\s+total$/);
    expect(text).toMatch(/web-1\s+1\.0 s\s+700 ms\s+500 ms\s+-\s+500 ms\s+2\.7 s/);
  });
});

describe('heartbeat', () => {
  it('prints "waiting for X, n s of T" while the work is pending, and stops when it settles', async () => {
    const lines: string[] = [];
    const r = await withHeartbeat((l) => lines.push(l), '/healthz', new Promise((res) => setTimeout(() => res(42), 130)), 30_000, 20);
    expect(r).toBe(42);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toMatch(/^waiting for \/healthz, \d+ s of 30$/);
    const n = lines.length;
    await new Promise((res) => setTimeout(res, 60));
    expect(lines.length).toBe(n);
  });
});

describe('rollout announcement on the proxy', () => {
  it('validates the body and expires by itself', () => {
    expect(parseRolloutBody({ release: 'r2', holder: 'ana@ci', done: 4, total: 3 })).toMatch(/done and total/);
    expect(parseRolloutBody({ holder: 'ana@ci', done: 0, total: 3 })).toMatch(/^release/);
    const ok = parseRolloutBody({ release: 'r2', holder: 'ana@ci', done: 1, total: 3, phase: 'web-2: draining', ttl_ms: 1000 });
    if (typeof ok === 'string') throw new Error(ok);
    const b = new RolloutBoard();
    b.announce(ok.rollout, ok.ttlMs, 10_000);
    expect(b.current(10_500)).toMatchObject({ release: 'r2', holder: 'ana@ci', done: 1, total: 3, phase: 'web-2: draining' });
    expect(b.current(11_000)).toBeNull();
  });
});

describe('status verdict (status rows -> fleetVerdict)', () => {
  const row = (instance: string, over: Partial<InstanceStatus> = {}): InstanceStatus => ({
    instance,
    reachable: true,
    ssh: { reachable: true },
    current: { release: 'r1', digest: 'd1' },
    running: { release: 'r1', digest: 'd1', pid: 1 },
    healthy: true,
    lock: null,
    proxy: { state: 'enabled', healthy: true, inflight: 0 },
    ...over,
  });

  it('ssh unreachable but the app answers and the proxy has it enabled: PARITY, the ssh failure named, exit 3 (it used to say not running / DOWN)', () => {
    const v = statusVerdict([row('web-1'), row('web-2', { reachable: false, ssh: { reachable: false, error: 'ECONNREFUSED' }, error: 'ECONNREFUSED', current: null })], 60_000);
    expect(v).toMatchObject({ state: 'parity', exitCode: 3 });
    expect(v.notes).toEqual(['web-2: ssh unreachable: ECONNREFUSED (disk and lock not read)']);
  });

  it('a LIVE lock is a rollout in progress with k of n and the holder; a stale one is not', () => {
    const now = Date.now();
    const lock = { user: 'ana', machine: 'ci-1', pid: process.pid, time: new Date(now).toISOString(), release: 'r2', message: 'deploy' };
    const rows = [row('web-1', { running: { release: 'r2', digest: 'd2', pid: 2 }, lock }), row('web-2', { lock, proxy: { state: 'draining', healthy: true, inflight: 0 } }), row('web-3', { lock })];
    expect(statusVerdict(rows, 60_000, null, now)).toMatchObject({ state: 'rolling-out', headline: `ROLLING OUT r2: 1 of 3 (ana@ci-1 pid ${process.pid})` });
    const old = { ...lock, time: new Date(now - 120_000).toISOString() };
    expect(statusVerdict(rows.map((r) => ({ ...r, lock: old })), 60_000, null, now).state).toBe('not-in-parity');
  });
});
