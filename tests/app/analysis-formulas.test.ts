/**
 * The two risk formulas on small tables worked out by hand (the arithmetic is in the comments),
 * so a change in either formula shows up as a wrong number, not just a different one.
 */
import { describe, expect, it } from 'vitest';
import { Matrix } from 'ml-matrix';
import { categoryOfRank, minMaxScale, rankDescending } from '../../app/server/analysis/composite.ts';
import { bartlett, kmo } from '../../app/server/analysis/pca.ts';
import { analysisInputOf, runAnalysis, type AnalysisInput } from '../../app/server/analysis/run.ts';
import { analysisToCsv, neutralizeCell } from '../../app/server/analysis/export.ts';
import type { ColumnSummary } from '../../app/server/table.ts';

function table(header: string[], rows: (string | null)[][], types: Record<string, ColumnSummary['type']>): AnalysisInput {
  return analysisInputOf({
    header,
    rows,
    lines: rows.map((_, i) => i + 2),
    columns: header.map((name) => ({
      name,
      type: types[name] ?? 'text',
      role: name === 'ward' ? 'ward_name' : types[name] === 'number' ? 'indicator' : 'text',
      missing: rows.filter((r) => r[header.indexOf(name)] === null).length,
    })),
    wardColumn: 'ward',
    wardCodeColumn: null,
  });
}

// rain (higher = more risk): 10 20 30 40       -> scaled 0, 1/3, 2/3, 1
// dist (higher = less risk): 100 300 NA 500    -> C imputed with mean (100+300+500)/3 = 300
//                                              -> scaled 0, .5, .5, 1 -> inverted 1, .5, .5, 0
// score = mean: A (0+1)/2 = .5, B (1/3+.5)/2 = 5/12, C (2/3+.5)/2 = 7/12, D (1+0)/2 = .5
// ranks: C 1, A 2 (ties keep file order), D 3, B 4; n = 4: ranks <= ceil(4/3)=2 high,
// <= ceil(8/3)=3 medium, else low.
const small = table(
  ['ward', 'rain', 'dist'],
  [
    ['A', '10', '100'],
    ['B', '20', '300'],
    ['C', '30', null],
    ['D', '40', '500'],
  ],
  { rain: 'number', dist: 'number' },
);

describe('composite score', () => {
  it('min-max scales to 0..1 and maps a constant column to 0', () => {
    expect(minMaxScale([10, 20, 30, 40])).toEqual([0, 1 / 3, 2 / 3, 1]);
    expect(minMaxScale([5, 5, 5])).toEqual([0, 0, 0]);
  });

  it('ranks highest first, ties in input order, and splits ranks into thirds', () => {
    expect(rankDescending([0.5, 5 / 12, 7 / 12, 0.5])).toEqual([2, 4, 1, 3]);
    expect([1, 2, 3, 4].map((r) => categoryOfRank(r, 4))).toEqual(['high', 'high', 'medium', 'low']);
    const counts = { high: 0, medium: 0, low: 0 };
    for (let r = 1; r <= 275; r++) counts[categoryOfRank(r, 275)] += 1;
    expect(counts).toEqual({ high: 92, medium: 92, low: 91 });
  });

  it('matches the hand-worked table: inversion is 1 - x, missing values imputed with the mean and reported', () => {
    const result = runAnalysis(small, 'composite', [
      { column: 'rain', direction: 'positive' },
      { column: 'dist', direction: 'negative' },
    ]);
    const byWard = Object.fromEntries(result.wards.map((w) => [w.ward_name, w]));
    expect(byWard.A!.score).toBeCloseTo(0.5, 12);
    expect(byWard.B!.score).toBeCloseTo(5 / 12, 12);
    expect(byWard.C!.score).toBeCloseTo(7 / 12, 12);
    expect(byWard.D!.score).toBeCloseTo(0.5, 12);
    expect(result.wards.map((w) => w.ward_name)).toEqual(['C', 'A', 'D', 'B']);
    expect(result.wards.map((w) => w.category)).toEqual(['high', 'high', 'medium', 'low']);
    // Indicator order is the request's: rain, dist.
    expect(byWard.D!.scaled![1]).toBe(0);
    expect(byWard.A!.scaled![1]).toBe(1);
    expect(byWard.B!.scaled![0]).toBeCloseTo(1 / 3, 12);
    expect(byWard.C!.imputed).toEqual(['dist']);
    expect(byWard.C!.values[1]).toBe(300);
    const dist = result.indicators.find((i) => i.column === 'dist')!;
    expect(dist).toMatchObject({ missing: 1, imputed_with: 300, direction: 'negative', source: 'request' });
  });

  it('chooses known covariates with their directions by default and says so', () => {
    const t = table(
      ['ward', 'population', 'pfpr', 'distance_to_water'],
      [
        ['A', '100', '0.1', '5'],
        ['B', '200', '0.3', '1'],
        ['C', '300', '0.2', '3'],
      ],
      { population: 'number', pfpr: 'number', distance_to_water: 'number' },
    );
    const result = runAnalysis(t, 'composite', undefined);
    expect(result.indicators.map((i) => [i.column, i.direction, i.source])).toEqual([
      ['pfpr', 'positive', 'default'],
      ['distance_to_water', 'negative', 'default'],
    ]);
    expect(result.wards[0]!.ward_name).toBe('B');
  });

  it('refuses an unknown or non-numeric indicator, naming the column', () => {
    expect(() => runAnalysis(small, 'composite', [{ column: 'nope', direction: 'positive' }])).toThrow(/no column "nope"/);
    expect(() => runAnalysis(small, 'composite', [{ column: 'ward' }])).toThrow(/not numeric/);
    expect(() => runAnalysis(small, 'composite', [{ column: 'rain', direction: 'up' }])).toThrow(/direction/);
  });
});

// x = 1 2 3 4, y = 2 1 4 3: both means 2.5, sample sd sqrt(5/3); sum of products of deviations
// = 3 so r = 3 / 3 / (5/3) = 0.6. Eigenvalues of R: 1.6 and 0.4 -> PC1 explains 0.8, with
// loadings (1/sqrt2, 1/sqrt2); index = (z_x + z_y)/sqrt2 = -2/(sd*sqrt2) = -1.0954451 for the
// first two wards and +1.0954451 for the last two. KMO of any 2x2 R is 0.5 (the partial
// correlation equals r). Bartlett: chi2 = -(4 - 1 - 9/6) ln(1 - 0.36) = 0.6694307, df 1,
// p = erfc(sqrt(chi2/2)) = 0.4132502.
const pcaRows = [
  ['A', '1', '2'],
  ['B', '2', '1'],
  ['C', '3', '4'],
  ['D', '4', '3'],
];
const pcaTable = table(['ward', 'x', 'y'], pcaRows, { x: 'number', y: 'number' });

describe('PCA index', () => {
  it('matches the hand-worked table', () => {
    const result = runAnalysis(pcaTable, 'pca', ['x', 'y']);
    expect(result.pca!.explained_variance).toBeCloseTo(0.8, 10);
    const loadings = result.indicators.map((i) => i.loading!);
    expect(loadings[0]).toBeCloseTo(Math.SQRT1_2, 10);
    expect(loadings[1]).toBeCloseTo(Math.SQRT1_2, 10);
    const byWard = Object.fromEntries(result.wards.map((w) => [w.ward_name, w]));
    expect(byWard.A!.index).toBeCloseTo(-1.0954451150103321, 10);
    expect(byWard.D!.index).toBeCloseTo(1.0954451150103321, 10);
    expect(result.wards.map((w) => w.ward_name)).toEqual(['C', 'D', 'A', 'B']);
    expect(result.pca!.suitability.kmo).toBeCloseTo(0.5, 10);
    expect(result.pca!.suitability.bartlett.chi2).toBeCloseTo(0.6694306539426292, 10);
    expect(result.pca!.suitability.bartlett.df).toBe(1);
    expect(result.pca!.suitability.bartlett.p_value).toBeCloseTo(0.4132501774037931, 6);
    // p > 0.05: not suitable, and the answer says so.
    expect(result.pca!.suitability.suitable).toBe(false);
    expect(result.warnings.join(' ')).toMatch(/not well suited to PCA/);
  });

  it('fixes the sign so a higher index means higher risk, whatever the direction of input', () => {
    // The same data with y reversed and declared negative must give the same index.
    const flipped = table(
      ['ward', 'x', 'y'],
      pcaRows.map((r) => [r[0]!, r[1]!, String(-Number(r[2]))]),
      { x: 'number', y: 'number' },
    );
    const a = runAnalysis(pcaTable, 'pca', [{ column: 'x', direction: 'positive' }, { column: 'y', direction: 'positive' }]);
    const b = runAnalysis(flipped, 'pca', [{ column: 'x', direction: 'positive' }, { column: 'y', direction: 'negative' }]);
    expect(b.wards.map((w) => w.index)).toEqual(a.wards.map((w) => w.index));
    // Both indicators negative: risk is highest where x and y are lowest.
    const c = runAnalysis(pcaTable, 'pca', [{ column: 'x', direction: 'negative' }, { column: 'y', direction: 'negative' }]);
    expect(c.wards.slice(0, 2).map((w) => w.ward_name).sort()).toEqual(['A', 'B']);
  });

  it('KMO of an equicorrelated 3x3 matrix (rho = .5) is (1+rho)^2 / ((1+rho)^2 + 1) = 0.6923', () => {
    // For equicorrelation the partial correlation is rho / (1 + rho) (closed-form inverse).
    const r = new Matrix([
      [1, 0.5, 0.5],
      [0.5, 1, 0.5],
      [0.5, 0.5, 1],
    ]);
    expect(kmo(r)).toBeCloseTo(2.25 / 3.25, 10);
    expect(kmo(Matrix.eye(3, 3))).toBeNull();
  });

  it('Bartlett is undefined (not a crash) for a singular correlation matrix', () => {
    const r = new Matrix([
      [1, 1],
      [1, 1],
    ]);
    expect(bartlett(r, 10)).toEqual({ chi2: null, df: 1, p_value: null });
  });

  it('needs two non-constant indicators', () => {
    expect(() => runAnalysis(pcaTable, 'pca', ['x'])).toThrow(/at least 2/);
  });
});

describe('export', () => {
  it.each(['=1+1', '+1', '-2+3', '@SUM(A1)', '\tcmd', '\rcmd'])('neutralises a text cell starting like a formula: %j', (cell) => {
    expect(neutralizeCell(cell)).toBe(`'${cell}`);
  });

  it('leaves ordinary text alone and writes numbers as numbers', () => {
    expect(neutralizeCell('Sabon Gari')).toBe('Sabon Gari');
    const t = table(
      ['ward', 'ndwi'],
      [
        ['=HYPERLINK("http://x","y")', '-0.4'],
        ['B', '0.1'],
      ],
      { ndwi: 'number' },
    );
    const csv = analysisToCsv(runAnalysis(t, 'composite', ['ndwi']));
    expect(csv.startsWith('\uFEFFrank,ward_name,ward_code,category,score,ndwi,ndwi_scaled,imputed\r\n')).toBe(true);
    expect(csv).toContain(`"'=HYPERLINK(""http://x"",""y"")"`);
    expect(csv).toMatch(/\r\n2,"'=HYPERLINK[^\r]*",,medium,0,-0\.4,0,\r\n/);
  });
});
