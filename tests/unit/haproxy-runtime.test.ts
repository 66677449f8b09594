// Parsers of HAProxy's Runtime API answers, on output captured from the real haproxy 2.6 (Debian 12):
// three servers, c in maintenance and down, its check failing.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseServersState, parseShowStat } from '../../proxy/haproxy/runtime.ts';

const fixture = (f: string) => readFileSync(join(import.meta.dirname, 'fixtures', f), 'utf8');

describe('HAProxy runtime API parsers', () => {
  it('show servers state: name, address, op state, maint/drain bits', () => {
    const s = parseServersState(fixture('haproxy-show-servers-state.txt'));
    expect(s.map((x) => [x.backend, x.name, x.port, x.opState, x.maint, x.drain])).toEqual([
      ['fleet', 'a', 4191, 2, false, false],
      ['fleet', 'b', 4192, 2, false, false],
      ['fleet', 'c', 4193, 0, true, false],
    ]);
    expect(parseServersState('1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n3 fleet 2 b 10.0.0.1 2 8 0 80\n')[0]).toMatchObject({ drain: true, maint: false, weight: 0 });
    expect(() => parseServersState('2\n# x\n')).toThrow(/unsupported format version/);
  });

  it('show stat: per server queue, sessions, status and response classes', () => {
    const rows = parseShowStat(fixture('haproxy-show-stat.csv'));
    const c = rows.find((r) => r.proxy === 'fleet' && r.name === 'c')!;
    expect(c.status).toBe('MAINT');
    const a = rows.find((r) => r.proxy === 'fleet' && r.name === 'a')!;
    expect(a).toMatchObject({ qcur: 0, scur: 0, status: 'UP' });
    expect(a.responses).toEqual({ '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0, other: 0 });
    expect(rows.some((r) => r.name === 'FRONTEND')).toBe(true);
  });
});
