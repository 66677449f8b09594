/**
 * The composite risk score used in malaria risk prioritisation.
 *
 * Formula, for ward i and chosen indicators k = 1..K (after mean imputation of missing values):
 *   scaled_ik = (x_ik - min_k) / (max_k - min_k)          min-max normalisation to 0..1
 *   scaled_ik = 1 - scaled_ik   when indicator k is `negative` (higher value = lower risk)
 *   score_i   = (1/K) * sum_k scaled_ik                     equal-weight arithmetic mean, 0..1
 * Wards are ranked by score, 1 = highest risk (ties keep file order), and split by rank into
 * thirds: ranks 1..ceil(n/3) "high", ..ceil(2n/3) "medium", the rest "low".
 *
 * Sources: min-max normalisation and linear (arithmetic mean) aggregation with equal weights are
 * standard steps in OECD/JRC, "Handbook on Constructing Composite Indicators: Methodology and
 * User Guide" (OECD, 2008), which also adjusts each indicator's polarity so that all point the
 * same way. Inversion is `1 - x` and not `1/x`: on 0..1 data a reciprocal sends every value to
 * 1 or infinity and destroys the ordering.
 * A constant indicator (max = min) carries no information: it is scaled to 0 for every ward
 * and reported in `warnings`.
 */
import type { PreparedIndicator } from './indicators.ts';

export type RiskCategory = 'high' | 'medium' | 'low';

/**
 * Min-max normalise values to 0..1.
 * @returns (x - min) / (max - min) per value; all 0 when max = min.
 */
export function minMaxScale(values: readonly number[]): number[] {
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = max - min;
  return values.map((v) => (range > 0 ? (v - min) / range : 0));
}

/**
 * Rank scores, highest first (rank 1); equal scores keep their input order.
 * @returns the 1-based rank of each input position.
 */
export function rankDescending(scores: readonly number[]): number[] {
  const order = scores.map((_, i) => i).sort((a, b) => scores[b]! - scores[a]! || a - b);
  const ranks = new Array<number>(scores.length);
  order.forEach((i, position) => (ranks[i] = position + 1));
  return ranks;
}

/** The risk category of a rank among n wards: thirds by rank (see the module comment). */
export function categoryOfRank(rank: number, n: number): RiskCategory {
  if (rank <= Math.ceil(n / 3)) return 'high';
  if (rank <= Math.ceil((2 * n) / 3)) return 'medium';
  return 'low';
}

export interface CompositeResult {
  /** Composite score per row, 0..1. */
  scores: number[];
  /** Scaled (and, for negative indicators, inverted) value per indicator, per row. */
  scaled: Record<string, number[]>;
  warnings: string[];
}

/**
 * Compute the composite score of every row.
 * @param indicators prepared indicators (complete values, same row count), at least one.
 * @returns scores in 0..1, the per-indicator scaled values, warnings (constant indicators).
 */
export function compositeScores(indicators: readonly PreparedIndicator[]): CompositeResult {
  const n = indicators[0]?.values.length ?? 0;
  const scaled: Record<string, number[]> = {};
  const warnings: string[] = [];
  const sums = new Array<number>(n).fill(0);
  for (const ind of indicators) {
    if (ind.max === ind.min) warnings.push(`indicator "${ind.column}" has the same value in every ward; it does not change the ranking`);
    const s = minMaxScale(ind.values).map((x) => (ind.direction === 'negative' && ind.max !== ind.min ? 1 - x : x));
    scaled[ind.column] = s;
    s.forEach((x, i) => (sums[i]! += x));
  }
  return { scores: sums.map((sum) => sum / indicators.length), scaled, warnings };
}
