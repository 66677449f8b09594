import { describe, expect, it } from 'vitest';
import type { ParityReport } from '../../deployer/checks/parity.ts';
import type { IsolationReport } from '../../deployer/checks/isolation.ts';
import { overallOk, renderReportJson, renderReportTable } from '../../deployer/checks/report.ts';

const D1 = '1'.repeat(64);
const D2 = '2'.repeat(64);

function parity(ok: boolean): ParityReport {
  return {
    kind: 'parity',
    ok,
    expected: { release: 'r1', digest: D1 },
    checks: [
      { check: 'version (direct)', subject: 'instance-1', status: 'pass', expected: `digest ${D1}`, found: `digest ${D1}` },
      ok
        ? { check: 'version (direct)', subject: 'instance-2', status: 'pass', expected: `digest ${D1}`, found: `digest ${D1}` }
        : { check: 'version (direct)', subject: 'instance-2', status: 'fail', expected: `digest ${D1}`, found: `digest ${D2}` },
      { check: 'version (proxy)', subject: 'proxy', status: 'skip', expected: 'a proxy URL', found: 'no proxy configured' },
    ],
    instances: [],
    proxy: null,
  };
}

const isolation: IsolationReport = {
  kind: 'isolation',
  ok: true,
  proxyUrl: 'http://127.0.0.1:8080',
  checks: [{ check: 'distinct session ids', subject: 'all sessions', status: 'pass', expected: '5 distinct', found: '5 distinct' }],
  sessions: [],
  forgeries: [],
};

describe('report rendering', () => {
  it('aligns columns across reports and shortens digests in the table only', () => {
    const table = renderReportTable([parity(false), isolation]);
    const rows = table.split('\n').filter((l) => /\s(PASS|FAIL|SKIP)\s/.test(l));
    expect(rows).toHaveLength(4);
    const resultColumn = new Set(rows.map((l) => l.search(/(PASS|FAIL|SKIP)/)));
    expect(resultColumn.size).toBe(1);
    expect(table).toContain(`instance-2    FAIL    expected digest 111111111111…; found digest 222222222222…`);
    expect(table).toContain('SKIP    no proxy configured');
    expect(table.trimEnd().split('\n').at(-1)).toBe('FAIL: 4 checks, 1 failed, 1 skipped');
    const json = JSON.parse(renderReportJson([parity(false), isolation])) as { ok: boolean; reports: ParityReport[] };
    expect(json.ok).toBe(false);
    expect(json.reports[0]!.checks[1]!.found).toBe(`digest ${D2}`);
  });

  it('overallOk: every report passes and skips do not fail; nothing verified is not ok', () => {
    expect(overallOk([parity(true), isolation])).toBe(true);
    expect(overallOk([parity(false), isolation])).toBe(false);
    expect(overallOk([])).toBe(false);
    expect(renderReportTable([parity(true)]).trimEnd().split('\n').at(-1)).toBe('PASS: 3 checks, 0 failed, 1 skipped');
  });
});
