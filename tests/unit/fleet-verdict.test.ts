/**
 * The one fleet verdict (verdict/fleet-verdict.ts) used by `status`, `drift` and the dashboard:
 * every state, and the two cases issue 11 reported (the dashboard said PARITY with 1 of 3 serving,
 * and DRIFT during every ordinary rolling deploy).
 */
import { describe, expect, it } from 'vitest';
import { fleetVerdict, type VerdictInstance } from '../../verdict/fleet-verdict.ts';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const up = (name: string, digest = A, release = digest === A ? 'r1' : 'r2'): VerdictInstance => ({ name, release, digest, healthy: true, proxyState: 'enabled', proxyHealthy: true });
const down = (name: string): VerdictInstance => ({ name, release: null, digest: null, healthy: false, versionError: 'ECONNREFUSED', proxyState: 'enabled', proxyHealthy: false });

describe('fleetVerdict', () => {
  it('PARITY: every instance serves one digest (exit 0)', () => {
    const v = fleetVerdict({ instances: [up('web-1'), up('web-2'), up('web-3')] });
    expect(v).toMatchObject({ state: 'parity', headline: 'PARITY: all 3 instances serve r1', release: 'r1', digest: A, serving: 3, total: 3, exitCode: 0 });
  });

  it('DEGRADED, not PARITY, with 1 of 3 serving (the dashboard used to say PARITY here)', () => {
    const v = fleetVerdict({ instances: [up('web-1'), down('web-2'), down('web-3')] });
    expect(v.state).toBe('degraded');
    expect(v.headline).toBe('DEGRADED: 1 of 3 instances serving r1; not serving: web-2 (/version: ECONNREFUSED), web-3 (/version: ECONNREFUSED)');
    expect(v.exitCode).toBe(1);
  });

  it('DEGRADED for an instance that answers /version but fails its health check, is unhealthy in the proxy or is not in it', () => {
    expect(fleetVerdict({ instances: [up('a'), { ...up('b'), healthy: false }] }).headline).toMatch(/^DEGRADED: 1 of 2 .*b \(health check fails\)/);
    expect(fleetVerdict({ instances: [up('a'), { ...up('b'), proxyHealthy: false }] }).headline).toMatch(/b \(the proxy finds it unhealthy\)/);
    expect(fleetVerdict({ instances: [up('a'), { ...up('b'), proxyState: 'absent' }] }).headline).toMatch(/b \(not in the proxy\)/);
  });

  it('NOT IN PARITY: different digests, grouped most common first, naming the ones not serving', () => {
    const v = fleetVerdict({ instances: [up('web-1'), up('web-2', B), up('web-3'), down('web-4')] });
    expect(v).toMatchObject({ state: 'not-in-parity', exitCode: 1 });
    expect(v.headline).toBe('NOT IN PARITY: r1 on web-1, web-3; r2 on web-2; not serving: web-4 (/version: ECONNREFUSED)');
  });

  it('NOT IN PARITY for a fleet-level problem the rows do not show (out of rotation under a stale lock)', () => {
    const v = fleetVerdict({ instances: [up('a'), up('b')], problems: ['a is draining in the proxy under the STALE lock of x@y pid 1'] });
    expect(v).toMatchObject({ state: 'not-in-parity', headline: 'NOT IN PARITY: a is draining in the proxy under the STALE lock of x@y pid 1' });
  });

  it('ROLLING OUT with k of n and the holder, not DRIFT, while a rollout mixes digests and drains instances', () => {
    const instances = [up('web-1', B), { ...up('web-2'), proxyState: 'draining' as const }, up('web-3')];
    const v = fleetVerdict({ instances, rollout: { release: 'r2', holder: 'ana@ci-1', done: 1, total: 3 } });
    expect(v).toMatchObject({ state: 'rolling-out', headline: 'ROLLING OUT r2: 1 of 3 (ana@ci-1)', exitCode: 1 });
    expect(fleetVerdict({ instances, rollout: { release: 'r1', holder: 'ana@ci-1', done: 2, total: 3, operation: 'rollback' } }).headline).toBe('ROLLING OUT r1 (rollback): 2 of 3 (ana@ci-1)');
    // The same fleet without the rollout: that is drift.
    expect(fleetVerdict({ instances }).state).toBe('not-in-parity');
  });

  it('UNKNOWN when an instance cannot be judged or there is none (exit 3)', () => {
    expect(fleetVerdict({ instances: [] })).toMatchObject({ state: 'unknown', exitCode: 3 });
    expect(fleetVerdict({ instances: [up('a'), { ...down('b'), known: false }] })).toMatchObject({ state: 'unknown', headline: 'UNKNOWN: cannot tell what b serves', exitCode: 3 });
  });

  it('STALE wins over everything: the data is from an earlier time (exit 3)', () => {
    const v = fleetVerdict({ instances: [up('a')], stale: 'lost the proxy at 10:00:00; data below is from then' });
    expect(v).toMatchObject({ state: 'stale', headline: 'STALE: lost the proxy at 10:00:00; data below is from then', exitCode: 3 });
  });

  it('an unread secondary source (SSH) keeps the serving verdict but is named and makes the exit code 3', () => {
    const v = fleetVerdict({ instances: [up('a'), { ...up('b'), unread: ['ssh unreachable: ECONNREFUSED'] }] });
    expect(v).toMatchObject({ state: 'parity', exitCode: 3, notes: ['b: ssh unreachable: ECONNREFUSED'] });
  });

  it('an instance drained by hand (no rollout) still serves its release: a note, not a verdict', () => {
    const v = fleetVerdict({ instances: [up('a'), { ...up('b'), proxyState: 'draining' }] });
    expect(v).toMatchObject({ state: 'parity', exitCode: 0, notes: ['b is draining in the proxy'] });
  });
});
