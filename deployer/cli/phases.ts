/**
 * Per-instance phase durations of a deploy, rollback or repair, for the summary table printed at
 * the end (issue 11, "Progress that a person can watch"). Phases are marked by the progress
 * callback's third argument (`upload`, `verify`, `unpack`, `assets`, `drain`, `switch`, `restart`, `gates`,
 * `enable`, `hook`); a phase lasts until the same instance starts another one or marks `-` (idle:
 * waiting for its batch, done). A phase entered twice (verify after upload and after unpack) sums.
 */
import { renderTable } from './table.ts';

/** The columns of the summary, in the order a deploy goes through them. */
export const PHASE_ORDER = ['upload', 'verify', 'unpack', 'assets', 'hook', 'drain', 'switch', 'restart', 'gates', 'enable'];

/** Accumulated phase durations per instance. */
export class PhaseClock {
  private readonly open = new Map<string, { phase: string; sinceMs: number }>();
  private readonly totals = new Map<string, Map<string, number>>();

  /** `instance` enters `phase` at `nowMs` (`-`: no phase); the phase it was in ends there. */
  mark(instance: string, phase: string, nowMs = Date.now()): void {
    this.stop(instance, nowMs);
    if (phase !== '-') this.open.set(instance, { phase, sinceMs: nowMs });
  }

  private stop(instance: string, nowMs: number): void {
    const cur = this.open.get(instance);
    if (!cur) return;
    this.open.delete(instance);
    const t = this.totals.get(instance) ?? new Map<string, number>();
    t.set(cur.phase, (t.get(cur.phase) ?? 0) + (nowMs - cur.sinceMs));
    this.totals.set(instance, t);
  }

  /** End every open phase at `nowMs`. @returns a copy: instance -> phase -> ms, instances in first-seen order. */
  finish(nowMs = Date.now()): Map<string, Map<string, number>> {
    for (const i of [...this.open.keys()]) this.stop(i, nowMs);
    return new Map([...this.totals].map(([i, t]) => [i, new Map(t)]));
  }

  /** True when no phase was ever marked. */
  empty(): boolean {
    return this.totals.size === 0 && this.open.size === 0;
  }

  /** Forget everything (a new operation starts). */
  reset(): void {
    this.open.clear();
    this.totals.clear();
  }
}

/** `1.2 s`, `850 ms`, `-` for a phase an instance did not go through. */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined) return '-';
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/**
 * The summary table: one row per instance, one column per phase any instance went through, and
 * the instance's total. @param totals from `PhaseClock.finish`.
 */
export function renderPhaseSummary(totals: Map<string, Map<string, number>>): string {
  const seen = new Set([...totals.values()].flatMap((t) => [...t.keys()]));
  const cols = [...PHASE_ORDER.filter((p) => seen.has(p)), ...[...seen].filter((p) => !PHASE_ORDER.includes(p))];
  const rows = [...totals].map(([instance, t]) => [instance, ...cols.map((c) => formatMs(t.get(c))), formatMs([...t.values()].reduce((a, b) => a + b, 0))]);
  return renderTable(['instance', ...cols, 'total'], rows);
}
