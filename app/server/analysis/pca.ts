/**
 * The PCA-based risk index, the second analysis method.
 *
 * Steps (Vyas S, Kumaranayake L. "Constructing socio-economic status indices: how to use
 * principal components analysis." Health Policy and Planning 2006;21(6):459-468):
 *   z_ik  = (x_ik - mean_k) / sd_k        z-score (sample sd, n-1) after mean imputation
 *   z_ik  = -z_ik  for `negative` indicators, so every indicator increases with risk
 *   PC1   = first principal component of the correlation matrix R of the z-scores
 *           (ml-pca, SVD), with loadings w (unit length); index_i = sum_k w_k z_ik
 *   sign  : w and the index are negated when sum_k w_k < 0. Since cov(index, sum_k z_k) =
 *           w' R 1 = lambda_1 * sum_k w_k, this makes a higher index go with higher
 *           (direction-aligned) indicator values, i.e. higher risk.
 *   share = lambda_1 / sum(lambda): the share of total variance PC1 explains.
 * Wards are ranked by the index (1 = highest risk) and split into thirds as in composite.ts;
 * `score` is the index min-max scaled to 0..1 for display next to the composite score.
 *
 * Suitability of the data for PCA, reported with every result:
 *   KMO (Kaiser H. "An index of factorial simplicity." Psychometrika 1974;39:31-36):
 *     KMO = sum_{i!=j} r_ij^2 / (sum_{i!=j} r_ij^2 + sum_{i!=j} p_ij^2), with partial
 *     correlations p_ij = -Rinv_ij / sqrt(Rinv_ii * Rinv_jj); suitable when KMO >= 0.5.
 *   Bartlett's test of sphericity (Bartlett MS. "Tests of significance in factor analysis."
 *     British Journal of Psychology, Statistical Section 1950;3:77-85):
 *     chi2 = -(n - 1 - (2p + 5) / 6) * ln det(R), df = p(p - 1) / 2; suitable when p < 0.05.
 */
import { Matrix, determinant, pseudoInverse } from 'ml-matrix';
import { PCA } from 'ml-pca';
import jstat from 'jstat';
import { AppError } from '../errors.ts';
import { minMaxScale } from './composite.ts';
import type { PreparedIndicator } from './indicators.ts';

export interface Suitability {
  kmo: number | null;
  bartlett: { chi2: number | null; df: number; p_value: number | null };
  /** KMO >= 0.5 and Bartlett p < 0.05. */
  suitable: boolean;
}

export interface PcaResult {
  /** Index (PC1 score) per row, sign fixed so higher = more risk. */
  index: number[];
  /** The index min-max scaled to 0..1. */
  scores: number[];
  /** PC1 loading per indicator (unit-length eigenvector, after the sign fix). */
  loadings: Record<string, number>;
  /** Share of total variance explained by PC1, 0..1. */
  explainedVariance: number;
  suitability: Suitability;
  /** Indicators left out (constant: they cannot be z-scored). */
  dropped: string[];
  warnings: string[];
}

/** Sample mean and standard deviation (n - 1). */
function meanSd(values: readonly number[]): { mean: number; sd: number } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  return { mean, sd: Math.sqrt(variance) };
}

/**
 * Kaiser-Meyer-Olkin measure of sampling adequacy of a correlation matrix.
 * @param r p x p correlation matrix. @returns KMO in 0..1, or null when undefined (no correlation at all).
 */
export function kmo(r: Matrix): number | null {
  const p = r.rows;
  // A pseudo-inverse keeps KMO defined for a singular R (perfectly collinear indicators).
  const inv = pseudoInverse(r);
  let r2 = 0;
  let p2 = 0;
  for (let i = 0; i < p; i++) {
    for (let j = 0; j < p; j++) {
      if (i === j) continue;
      r2 += r.get(i, j) ** 2;
      const denom = Math.sqrt(inv.get(i, i) * inv.get(j, j));
      const partial = denom > 0 ? -inv.get(i, j) / denom : 0;
      p2 += partial ** 2;
    }
  }
  return r2 + p2 > 0 ? r2 / (r2 + p2) : null;
}

/**
 * Bartlett's test of sphericity (H0: R is the identity).
 * @param r p x p correlation matrix. @param n number of observations (wards).
 * @returns chi2, df and p-value; chi2 and p null when det(R) <= 0 (singular R: the test is undefined).
 */
export function bartlett(r: Matrix, n: number): Suitability['bartlett'] {
  const p = r.rows;
  const df = (p * (p - 1)) / 2;
  const det = determinant(r);
  if (!(det > 0)) return { chi2: null, df, p_value: null };
  const chi2 = -(n - 1 - (2 * p + 5) / 6) * Math.log(det);
  return { chi2, df, p_value: 1 - jstat.jStat.chisquare.cdf(chi2, df) };
}

/** Pearson correlation matrix of column-major z-scores (already centred and scaled). */
function correlation(z: number[][], n: number): Matrix {
  const p = z.length;
  const r = new Matrix(p, p);
  for (let i = 0; i < p; i++) {
    for (let j = i; j < p; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += z[i]![k]! * z[j]![k]!;
      const v = i === j ? 1 : s / (n - 1);
      r.set(i, j, v);
      r.set(j, i, v);
    }
  }
  return r;
}

/**
 * Compute the PCA risk index.
 * @param indicators prepared indicators (complete values, equal length).
 * @throws AppError 422 PCA_NEEDS_MORE when fewer than 2 non-constant indicators or 3 wards remain.
 */
export function pcaIndex(indicators: readonly PreparedIndicator[]): PcaResult {
  const n = indicators[0]?.values.length ?? 0;
  const dropped: string[] = [];
  const warnings: string[] = [];
  const used: PreparedIndicator[] = [];
  const z: number[][] = [];
  for (const ind of indicators) {
    const { mean, sd } = meanSd(ind.values);
    if (!(sd > 0)) {
      dropped.push(ind.column);
      warnings.push(`indicator "${ind.column}" is constant and was left out of the PCA`);
      continue;
    }
    const sign = ind.direction === 'negative' ? -1 : 1;
    used.push(ind);
    z.push(ind.values.map((v) => (sign * (v - mean)) / sd));
  }
  if (used.length < 2 || n < 3) {
    throw new AppError(422, 'PCA_NEEDS_MORE', 'the PCA index needs at least 2 non-constant indicators and 3 wards');
  }
  const rows = Array.from({ length: n }, (_, k) => z.map((col) => col[k]!));
  const pca = new PCA(rows, { center: true, scale: false });
  const eigen = pca.getEigenvectors();
  let w = used.map((_, i) => eigen.get(i, 0));
  let index = pca.predict(rows, { nComponents: 1 }).getColumn(0);
  if (w.reduce((a, b) => a + b, 0) < 0) {
    w = w.map((x) => -x);
    index = index.map((x) => -x);
  }
  const r = correlation(z, n);
  const k = kmo(r);
  const b = bartlett(r, n);
  const suitable = k !== null && k >= 0.5 && b.p_value !== null && b.p_value < 0.05;
  if (!suitable) {
    warnings.push(
      `the data are not well suited to PCA (KMO ${k === null ? 'undefined' : k.toFixed(2)}, Bartlett p ${
        b.p_value === null ? 'undefined' : b.p_value.toPrecision(2)
      }); prefer the composite score`,
    );
  }
  return {
    index,
    scores: minMaxScale(index),
    loadings: Object.fromEntries(used.map((ind, i) => [ind.column, w[i]!])),
    explainedVariance: pca.getExplainedVariance()[0]!,
    suitability: { kmo: k, bartlett: b, suitable },
    dropped,
    warnings,
  };
}
