/**
 * Rendering of post-deploy check reports: an aligned plain-text table for people and JSON for
 * machines (`lockstep verify --json`). Both come from the same `CheckResult` lines.
 */
import type { CheckResult } from './types.ts';
import type { ParityReport } from './parity.ts';
import type { IsolationReport } from './isolation.ts';

export type CheckReport = ParityReport | IsolationReport;

/** True when every report passed (an empty list is not a pass: nothing was verified). */
export function overallOk(reports: readonly CheckReport[]): boolean {
  return reports.length > 0 && reports.every((r) => r.ok && r.checks.every((c) => c.status !== 'fail'));
}

/** Full sha256 digests make a table unreadable; 12 hex digits still tell releases apart. */
function shortenDigests(text: string): string {
  return text.replace(/\b([0-9a-f]{12})[0-9a-f]{52}\b/g, '$1…');
}

function clip(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

function title(r: CheckReport): string {
  return r.kind === 'parity'
    ? `Version parity: expected release ${r.expected.release}, digest ${r.expected.digest}`
    : `Session isolation through ${r.proxyUrl} (${r.sessions.length} concurrent sessions)`;
}

function detail(c: CheckResult): string {
  return c.status === 'fail' ? `expected ${c.expected}; found ${c.found}` : c.found;
}

const MAX_COLUMN = 48;

/**
 * Render reports as a plain-text table: a title per report, then CHECK, SUBJECT, RESULT
 * (PASS/FAIL/SKIP) and DETAIL columns aligned across all reports, then a one-line summary.
 * A failure's detail says what was expected and what was found. Digests are shortened to 12
 * hex digits in the table only (the JSON keeps them whole).
 */
export function renderReportTable(reports: readonly CheckReport[]): string {
  const rows = reports.flatMap((r) => r.checks);
  const w1 = Math.min(MAX_COLUMN, Math.max('CHECK'.length, ...rows.map((c) => c.check.length)));
  const w2 = Math.min(MAX_COLUMN, Math.max('SUBJECT'.length, ...rows.map((c) => c.subject.length)));
  const line = (a: string, b: string, c: string, d: string): string =>
    `${clip(a, w1).padEnd(w1)}  ${clip(b, w2).padEnd(w2)}  ${c.padEnd(6)}  ${d}`.trimEnd();
  const out: string[] = [];
  for (const r of reports) {
    if (out.length > 0) out.push('');
    out.push(title(r));
    out.push(line('CHECK', 'SUBJECT', 'RESULT', 'DETAIL'));
    // Same look as the CLI's other tables (deployer/table.ts on main): a rule under the header.
    out.push(line('-'.repeat(w1), '-'.repeat(w2), '-'.repeat(6), '-'.repeat(6)));
    for (const c of r.checks) out.push(line(c.check, c.subject, c.status.toUpperCase(), shortenDigests(detail(c))));
  }
  const failed = rows.filter((c) => c.status === 'fail').length;
  const skipped = rows.filter((c) => c.status === 'skip').length;
  if (out.length > 0) out.push('');
  out.push(
    `${overallOk(reports) ? 'PASS' : 'FAIL'}: ${rows.length} checks, ${failed} failed, ${skipped} skipped`,
  );
  return `${out.join('\n')}\n`;
}

/** Render reports as JSON: `{ok, reports}` with every field of every report, digests whole. */
export function renderReportJson(reports: readonly CheckReport[]): string {
  return `${JSON.stringify({ ok: overallOk(reports), reports }, null, 2)}\n`;
}
