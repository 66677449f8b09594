/**
 * The synonym table (app/server/analysis/variables.ts): a burden measure is recognised under the
 * names real state files give it, population is never a default, the analysis says which
 * variables it used and why, and warns when no malaria burden measure is among them.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { analysisInputOf, runAnalysis, type AnalysisInput } from '../../app/server/analysis/run.ts';
import { KNOWN_VARIABLES, matchVariable } from '../../app/server/analysis/variables.ts';
import type { ColumnSummary } from '../../app/server/table.ts';
import { repoRoot } from './support.ts';

/** A table of three wards whose every column but `ward` is a numeric indicator. */
function table(header: string[], rows: string[][]): AnalysisInput {
  return analysisInputOf({
    header,
    rows,
    lines: rows.map((_, i) => i + 2),
    columns: header.map(
      (name): ColumnSummary => ({ name, type: name === 'ward' ? 'text' : 'number', role: name === 'ward' ? 'ward_name' : 'indicator', missing: 0 }),
    ),
    wardColumn: 'ward',
    wardCodeColumn: null,
  });
}

const rows = [
  ['A', '1000', '12', '5'],
  ['B', '9000', '40', '1'],
  ['C', '3000', '25', '3'],
];

describe('the synonym table', () => {
  it.each(['tpr_u5', 'u5_tpr', 'TPR U5', 'u5_tpr_rdt', 'U5TPR', 'tpr-under5', 'Under5 TPR'])(
    'recognises %j as the under-5 test positivity rate (higher = more malaria) and uses it by default',
    (name) => {
      const result = runAnalysis(table(['ward', 'population', name, 'distance_to_water'], rows), 'composite', undefined);
      const used = result.indicators.find((i) => i.column === name);
      expect(used).toMatchObject({ direction: 'positive', source: 'default', variable: { id: 'u5_tpr', kind: 'burden' } });
      expect(used!.variable!.rule_source).toMatch(/^WHO, Malaria surveillance, monitoring & evaluation/);
      expect(result.variables).toMatchObject({ burden_measure_found: true, burden_measures: [name] });
      expect(result.warnings.join(' ')).not.toMatch(/burden/);
    },
  );

  it('shows the synonym a column matched', () => {
    const result = runAnalysis(table(['ward', 'population', 'PfPR', 'Distance to Water'], rows), 'composite', undefined);
    expect(result.indicators.map((i) => [i.column, i.variable?.synonym, i.direction])).toEqual([
      ['PfPR', 'pfpr', 'positive'],
      ['Distance to Water', 'distance_to_water', 'negative'],
    ]);
  });

  it('never ranks on population by default, and says why it was left out', () => {
    const result = runAnalysis(table(['ward', 'population', 'tpr', 'elevation'], rows), 'composite', undefined);
    expect(result.indicators.map((i) => i.column)).toEqual(['tpr', 'elevation']);
    expect(result.variables.not_used).toEqual([{ column: 'population', reason: expect.stringMatching(/^a size measure \(population\), not a risk: never a default$/) }]);
  });

  it('refuses a default ranking of a file whose only numeric column is population (422 NO_KNOWN_INDICATORS)', () => {
    const only = table(['ward', 'population'], rows.map((r) => r.slice(0, 2)));
    expect(() => runAnalysis(only, 'composite', undefined)).toThrow(/no column is a recognised malaria risk variable \(numeric columns: population/);
    // The analyst may still choose it explicitly: then the answer says it ranks by size.
    const chosen = runAnalysis(only, 'composite', [{ column: 'population', direction: 'positive' }]);
    expect(chosen.warnings.join(' ')).toMatch(/population: a size measure, not a risk/);
  });

  it('warns that a ranking without a malaria burden measure is not a malaria risk ranking', () => {
    const result = runAnalysis(table(['ward', 'population', 'mean_rainfall', 'elevation'], rows), 'composite', undefined);
    expect(result.variables).toMatchObject({ burden_measure_found: false, burden_measures: [] });
    expect(result.warnings[0]).toMatch(/No malaria burden measure .* It is NOT a malaria risk ranking/);
    expect(result.indicators.every((i) => i.variable?.kind === 'covariate')).toBe(true);
  });

  it('has no synonym twice, and app/README.md lists every synonym', () => {
    const readme = readFileSync(join(repoRoot, 'app', 'README.md'), 'utf8');
    const seen = new Map<string, string>();
    for (const v of KNOWN_VARIABLES) {
      for (const s of v.synonyms) {
        expect(seen.get(s), `${s} in ${v.id} and ${seen.get(s)}`).toBeUndefined();
        seen.set(s, v.id);
        expect(matchVariable(s)?.variable.id).toBe(v.id);
        expect(readme, `README lacks the synonym ${s} of ${v.id}`).toContain(`\`${s}\``);
      }
    }
  });
});
