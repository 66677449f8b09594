// Pure parts of the SSH fault handling: the per-connection channel gate (MaxSessions), the
// fleet-state sentence after a failed rollout, and remote command error messages.
import { describe, expect, it } from 'vitest';
import { RemoteCommandError } from '../../config/errors.ts';
import { describeFleetState } from '../../deployer/rollout/run.ts';
import { ChannelGate } from '../../deployer/transport/channel-gate.ts';

describe('ChannelGate', () => {
  it('queues beyond its limit, first come first served', async () => {
    const gate = new ChannelGate(2);
    const a = await gate.acquire();
    const b = await gate.acquire();
    const order: string[] = [];
    const c = gate.acquire().then((r) => (order.push('c'), r));
    const d = gate.acquire().then((r) => (order.push('d'), r));
    await Promise.resolve();
    expect(gate.open).toBe(2);
    expect(order).toEqual([]);
    a();
    a(); // idempotent: gives back one slot only
    const rc = await c;
    expect(order).toEqual(['c']);
    b();
    await d;
    expect(order).toEqual(['c', 'd']);
    expect(gate.open).toBe(2);
    rc();
  });

  it('a refusal while others are open lowers the limit to what the server took; alone it does not', async () => {
    const gate = new ChannelGate(8);
    const first = await gate.acquire();
    expect(gate.refused()).toBe(false); // the only channel: not about our count
    expect(gate.limit).toBe(8);
    const held = [first, await gate.acquire(), await gate.acquire(), await gate.acquire()];
    expect(gate.refused()).toBe(true); // the 4th was refused: the server takes 3
    expect(gate.limit).toBe(3);
    held.pop()!(); // the refused open gives its slot back and queues again
    let got = false;
    const again = gate.acquire().then((r) => ((got = true), r));
    await Promise.resolve();
    expect(got).toBe(false);
    held.pop()!();
    (await again)();
    expect(got).toBe(true);
    held.forEach((r) => r());
    expect(gate.open).toBe(0);
  });
});

describe('describeFleetState', () => {
  it('says "unreachable" for a lost host and names instances left draining', () => {
    const s = describeFleetState(
      [
        { instance: 'web-1', before: 'A', now: 'A', state: 'rolled-back' },
        { instance: 'web-2', before: 'A', now: null, state: 'unknown', unreachable: true, draining: true },
      ],
      false,
    );
    expect(s).toBe('MIXED FLEET: web-1=A, web-2=unreachable; left DRAINING in the proxy: web-2 (run `lockstep drift --repair`)');
  });

  it('keeps "none" for an instance that serves nothing, and the one-release sentences', () => {
    expect(describeFleetState([{ instance: 'a', before: null, now: null, state: 'failed' }, { instance: 'b', before: 'R', now: 'R', state: 'activated' }], false)).toBe(
      'MIXED FLEET: a=none, b=R',
    );
    expect(describeFleetState([{ instance: 'a', before: 'Q', now: 'R', state: 'activated' }], true)).toBe('every instance serves R');
    expect(describeFleetState([{ instance: 'a', before: 'Q', now: 'Q', state: 'rolled-back' }], false)).toBe('rolled back: the whole fleet serves Q');
  });
});

describe('RemoteCommandError', () => {
  it('names the signal, a missing exit status, and shows a long command cut short', () => {
    expect(new RemoteCommandError('web-1', 'sleep 9', null, 'SIGKILL', '').message).toBe('on web-1: `sleep 9` was killed by SIGKILL');
    expect(new RemoteCommandError('web-1', 'true', null, null, 'x\n').message).toBe('on web-1: `true` ended with no exit status: x');
    const long = `export A=${'a'.repeat(1500)}; start`;
    const m = new RemoteCommandError('web-1', long, 1, null, 'boom').message;
    expect(m.length).toBeLessThan(160);
    expect(m).toMatch(/^on web-1: `export A=a+\.\.\.` exited 1: boom$/);
  });
});
