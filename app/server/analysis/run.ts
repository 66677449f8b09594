/**
 * One analysis run on a session's table: choose and prepare indicators, score with the chosen
 * method, rank, categorise. The result is what POST /api/analysis answers, what the export
 * writes and what the map colours.
 */
import { AppError } from '../errors.ts';
import type { ColumnSummary } from '../table.ts';
import { categoryOfRank, compositeScores, rankDescending, type RiskCategory } from './composite.ts';
import { chooseIndicators, prepareIndicators, type ChoiceVariable, type Direction, type NotUsed } from './indicators.ts';
import { pcaIndex, type Suitability } from './pca.ts';

export type Method = 'composite' | 'pca';

export const FORMULAS: Readonly<Record<Method, string>> = {
  composite:
    'score = mean over indicators of min-max scaled values, (x - min) / (max - min), inverted as 1 - x where a higher value means lower risk; ' +
    'rank 1 = highest score; thirds by rank = high / medium / low. Missing values imputed with the column mean. ' +
    'Source: OECD/JRC Handbook on Constructing Composite Indicators (2008).',
  pca:
    'index = first principal component of the z-scored indicators (negative indicators multiplied by -1), sign fixed so that a higher index means higher risk; ' +
    'score = index min-max scaled to 0..1; rank 1 = highest index; thirds by rank. Suitability: KMO >= 0.5 and Bartlett p < 0.05. ' +
    'Source: Vyas & Kumaranayake, Health Policy and Planning 2006; Kaiser 1974; Bartlett 1950.',
};

export interface WardResult {
  rank: number;
  /** 1-based line of the ward in the uploaded file. */
  line: number;
  ward_name: string;
  ward_code: string | null;
  category: RiskCategory;
  /** Composite score or scaled PCA index, 0..1 (higher = more risk). */
  score: number;
  /** The raw PC1 index (PCA method only). */
  index?: number;
  /** Indicator values used (after imputation), in the column's units, in `indicators` order. */
  values: number[];
  /** Scaled 0..1 (inverted for negative indicators) values, in `indicators` order (composite only). */
  scaled?: number[];
  /** Indicators whose value was missing and imputed for this ward. */
  imputed: string[];
}

export interface IndicatorReport {
  column: string;
  direction: Direction;
  source: 'request' | 'default';
  /** How the synonym table recognised the column (matched synonym, kind, source of the direction rule); null when it did not. */
  variable: ChoiceVariable | null;
  missing: number;
  imputed_with: number | null;
  min: number;
  max: number;
  loading?: number;
}

export interface AnalysisResult {
  method: Method;
  formula: string;
  created_at: string;
  ward_column: string;
  ward_code_column: string | null;
  indicators: IndicatorReport[];
  categories: Record<RiskCategory, number>;
  pca?: { explained_variance: number; suitability: Suitability; dropped: string[] };
  /** Which variables the ranking rests on: whether a malaria burden measure is among them, and what a default choice left out. */
  variables: VariablesReport;
  warnings: string[];
  /** Sorted by rank (1 first). */
  wards: WardResult[];
}

export interface VariablesReport {
  /** True when at least one indicator is a malaria burden measure (test positivity, parasite rate, incidence). */
  burden_measure_found: boolean;
  /** The indicators that are burden measures. */
  burden_measures: string[];
  /** Numeric columns a default choice left out, with the reason (empty for a requested choice). */
  not_used: NotUsed[];
}

/** The warning given when no indicator is a malaria burden measure. */
export const NO_BURDEN_WARNING =
  'No malaria burden measure (test positivity rate, parasite rate or incidence; see the synonym table) is among the indicators: ' +
  'this ranking orders wards by environmental and structural factors only. It is NOT a malaria risk ranking.';

/**
 * What an analysis reads: the table reduced to ward identity and numeric columns. Built once at
 * upload (stored as `analysis-input.json`), so an analysis never re-parses every text cell.
 */
export interface AnalysisInput {
  columns: ColumnSummary[];
  wardColumn: string;
  wardCodeColumn: string | null;
  wardNames: string[];
  wardCodes: (string | null)[];
  /** 1-based file line of each ward. */
  lines: number[];
  /** Every numeric column by name; null where the cell was missing. */
  numeric: Record<string, (number | null)[]>;
}

/** Reduce a parsed table (cells as text, null = missing) to an AnalysisInput. */
export function analysisInputOf(table: {
  header: string[];
  rows: (string | null)[][];
  lines: number[];
  columns: ColumnSummary[];
  wardColumn: string;
  wardCodeColumn: string | null;
}): AnalysisInput {
  const wardIdx = table.header.indexOf(table.wardColumn);
  const codeIdx = table.wardCodeColumn ? table.header.indexOf(table.wardCodeColumn) : -1;
  const numeric: Record<string, (number | null)[]> = {};
  table.columns.forEach((col, c) => {
    if (col.type === 'number') numeric[col.name] = table.rows.map((row) => (row[c] == null ? null : Number(row[c])));
  });
  return {
    columns: table.columns,
    wardColumn: table.wardColumn,
    wardCodeColumn: table.wardCodeColumn,
    wardNames: table.rows.map((row) => row[wardIdx] ?? ''),
    wardCodes: table.rows.map((row) => (codeIdx >= 0 ? (row[codeIdx] ?? null) : null)),
    lines: table.lines,
    numeric,
  };
}

/** The analysis as answered over the API: per-ward indicator values are left to the export. */
export function publicAnalysis(result: AnalysisResult): Omit<AnalysisResult, 'wards'> & { wards: Omit<WardResult, 'values' | 'scaled'>[] } {
  return { ...result, wards: result.wards.map(({ values: _values, scaled: _scaled, ...rest }) => rest) };
}

/**
 * Parse the request body of POST /api/analysis.
 * @returns method (default composite) and the raw indicator request (undefined = defaults).
 * @throws AppError 400 BAD_METHOD / BAD_REQUEST.
 */
export function parseAnalysisRequest(body: unknown): { method: Method; indicators: unknown } {
  if (body === undefined || body === null || body === '') return { method: 'composite', indicators: undefined };
  if (typeof body !== 'object' || Array.isArray(body)) throw new AppError(400, 'BAD_REQUEST', 'the body must be a JSON object {method, indicators}');
  const { method, indicators } = body as { method?: unknown; indicators?: unknown };
  if (method !== undefined && method !== 'composite' && method !== 'pca') {
    throw new AppError(400, 'BAD_METHOD', '"method" must be "composite" or "pca"');
  }
  return { method: (method as Method | undefined) ?? 'composite', indicators };
}

/**
 * Run an analysis.
 * @throws AppError 400 for a bad indicator choice, 422 when the data cannot be analysed.
 */
export function runAnalysis(input: AnalysisInput, method: Method, requestedIndicators: unknown, now = new Date()): AnalysisResult {
  const { choices, notUsed } = chooseIndicators(input.columns, requestedIndicators);
  if (choices.length === 0) throw new AppError(422, 'NO_INDICATORS', 'the table has no numeric indicator to analyse');
  const prepared = prepareIndicators(input.numeric, choices);
  const n = input.wardNames.length;

  let scores: number[];
  let scaled: Record<string, number[]> | null = null;
  let index: number[] | null = null;
  let warnings: string[];
  let pcaReport: AnalysisResult['pca'];
  let loadings: Record<string, number> = {};
  if (method === 'composite') {
    const result = compositeScores(prepared);
    scores = result.scores;
    scaled = result.scaled;
    warnings = result.warnings;
  } else {
    const result = pcaIndex(prepared);
    scores = result.scores;
    index = result.index;
    warnings = result.warnings;
    loadings = result.loadings;
    pcaReport = { explained_variance: result.explainedVariance, suitability: result.suitability, dropped: result.dropped };
  }
  // Rank on the unscaled index for PCA so min-max rounding never reorders wards.
  const ranks = rankDescending(index ?? scores);
  const imputedByRow = new Map<number, string[]>();
  for (const ind of prepared) {
    for (const r of ind.imputedRows) imputedByRow.set(r, [...(imputedByRow.get(r) ?? []), ind.column]);
  }
  const scaledColumns = scaled ? prepared.map((ind) => scaled[ind.column]!) : null;
  const wards: WardResult[] = input.wardNames.map((name, r) => {
    const ward: WardResult = {
      rank: ranks[r]!,
      line: input.lines[r]!,
      ward_name: name,
      ward_code: input.wardCodes[r] ?? null,
      category: categoryOfRank(ranks[r]!, n),
      score: scores[r]!,
      values: prepared.map((ind) => ind.values[r]!),
      imputed: imputedByRow.get(r) ?? [],
    };
    if (index) ward.index = index[r]!;
    if (scaledColumns) ward.scaled = scaledColumns.map((s) => s[r]!);
    return ward;
  });
  wards.sort((a, b) => a.rank - b.rank);
  const burdenMeasures = prepared.filter((ind) => ind.variable?.kind === 'burden').map((ind) => ind.column);
  const sizes = prepared.filter((ind) => ind.variable?.kind === 'size').map((ind) => ind.column);
  warnings = [
    ...(burdenMeasures.length === 0 ? [NO_BURDEN_WARNING] : []),
    ...(sizes.length > 0 ? [`${sizes.join(', ')}: a size measure, not a risk; ranking on it ranks wards by size`] : []),
    ...warnings,
  ];
  const categories = { high: 0, medium: 0, low: 0 };
  for (const w of wards) categories[w.category] += 1;
  return {
    method,
    formula: FORMULAS[method],
    created_at: now.toISOString(),
    ward_column: input.wardColumn,
    ward_code_column: input.wardCodeColumn,
    indicators: prepared.map((ind) => ({
      column: ind.column,
      direction: ind.direction,
      source: ind.source,
      variable: ind.variable,
      missing: ind.missing,
      imputed_with: ind.imputedWith,
      min: ind.min,
      max: ind.max,
      ...(method === 'pca' && ind.column in loadings ? { loading: loadings[ind.column]! } : {}),
    })),
    categories,
    ...(pcaReport ? { pca: pcaReport } : {}),
    variables: { burden_measure_found: burdenMeasures.length > 0, burden_measures: burdenMeasures, not_used: notUsed },
    warnings,
    wards,
  };
}
