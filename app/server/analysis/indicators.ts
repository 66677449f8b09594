/**
 * Choosing indicators and their directions, and turning table columns into complete numeric
 * vectors (missing values imputed with the column mean, and reported, never dropped).
 */
import { AppError } from '../errors.ts';
import { normalizeName, type ColumnSummary } from '../table.ts';

/**
 * How an indicator relates to malaria risk: `positive` when a higher value means higher risk
 * (rainfall, parasite rate), `negative` when a higher value means lower risk (distance to water,
 * housing quality, elevation, urban share).
 */
export type Direction = 'positive' | 'negative';

export interface IndicatorChoice {
  column: string;
  direction: Direction;
}

/** An indicator as used in an analysis, with what was done to it. */
export interface PreparedIndicator extends IndicatorChoice {
  /** Why this direction: `request` (the caller chose) or `default` (the table below). */
  source: 'request' | 'default';
  /** Values per row after imputation (raw units of the column). */
  values: number[];
  missing: number;
  /** Mean of the present values, used for every missing cell (null when nothing was missing). */
  imputedWith: number | null;
  /** Row indexes (0-based) whose value was imputed. */
  imputedRows: number[];
  min: number;
  max: number;
}

/**
 * Known malaria-risk covariates, by normalised column name, with the direction of their
 * relation to risk. Wetness, vegetation, rainfall, humidity, temperature (in the tropical range
 * of these data) and measured infection favour transmission; distance to water, better
 * housing, elevation and urbanisation (urban share, night-time lights, building height) reduce it.
 * Population and area columns are size measures, not risk indicators: never chosen by default.
 */
const KNOWN_DIRECTIONS: Readonly<Record<string, Direction>> = {
  pfpr: 'positive',
  u5tprrdt: 'positive',
  tpr: 'positive',
  testpositivityrate: 'positive',
  meanrainfall: 'positive',
  rainfall: 'positive',
  avgrainfall: 'positive',
  flood: 'positive',
  ndwi: 'positive',
  ndmi: 'positive',
  meansoilwetness: 'positive',
  soilwetness: 'positive',
  meanevi: 'positive',
  evi: 'positive',
  meanndvi: 'positive',
  ndvi: 'positive',
  ndviscore: 'positive',
  rhmean: 'positive',
  humidity: 'positive',
  tempmean: 'positive',
  temperature: 'positive',
  disttoclinic: 'positive',
  distancetoclinic: 'positive',
  distancetowater: 'negative',
  disttowater: 'negative',
  housingquality: 'negative',
  avghousescore: 'negative',
  housescore: 'negative',
  elevation: 'negative',
  urbanpercentage: 'negative',
  urbanpercent: 'negative',
  avgrad: 'negative',
  nighttimelights: 'negative',
  buildingheight: 'negative',
};

/** The default direction of a column, or null when the column is not a known risk covariate. */
export function knownDirection(column: string): Direction | null {
  return KNOWN_DIRECTIONS[normalizeName(column)] ?? null;
}

/**
 * Choose the indicators: the request's when given, else every known covariate in the table
 * (else every numeric indicator column, as `positive`).
 * @throws AppError 400 BAD_INDICATORS / UNKNOWN_COLUMN / NOT_NUMERIC (with column) for a bad request.
 */
export function chooseIndicators(columns: ColumnSummary[], requested: unknown): (IndicatorChoice & { source: 'request' | 'default' })[] {
  const byName = new Map(columns.map((c) => [c.name, c]));
  if (requested === undefined || requested === null) {
    const candidates = columns.filter((c) => c.role === 'indicator');
    const known = candidates.filter((c) => knownDirection(c.name) !== null);
    const chosen = known.length > 0 ? known : candidates;
    return chosen.map((c) => ({ column: c.name, direction: knownDirection(c.name) ?? 'positive', source: 'default' as const }));
  }
  if (!Array.isArray(requested) || requested.length === 0) {
    throw new AppError(400, 'BAD_INDICATORS', '"indicators" must be a non-empty list of {column, direction}');
  }
  const seen = new Set<string>();
  return requested.map((item: unknown, i) => {
    const entry = (typeof item === 'string' ? { column: item } : item) as { column?: unknown; direction?: unknown } | null;
    if (!entry || typeof entry.column !== 'string') {
      throw new AppError(400, 'BAD_INDICATORS', `indicators[${i}] must be a column name or {column, direction}`);
    }
    const column = entry.column;
    const summary = byName.get(column);
    if (!summary) throw new AppError(400, 'UNKNOWN_COLUMN', `indicators[${i}]: no column "${column}" in the uploaded table`, { column });
    if (summary.type !== 'number') {
      throw new AppError(400, 'NOT_NUMERIC', `indicators[${i}]: column "${column}" is not numeric (${summary.type})`, { column });
    }
    if (seen.has(column)) throw new AppError(400, 'BAD_INDICATORS', `indicators[${i}]: column "${column}" is listed twice`, { column });
    seen.add(column);
    let direction: Direction;
    if (entry.direction === undefined) direction = knownDirection(column) ?? 'positive';
    else if (entry.direction === 'positive' || entry.direction === 'negative') direction = entry.direction;
    else {
      throw new AppError(400, 'BAD_INDICATORS', `indicators[${i}].direction must be "positive" (higher = more risk) or "negative" (higher = less risk)`, {
        column,
      });
    }
    return { column, direction, source: 'request' as const };
  });
}

/**
 * Take the chosen columns as complete numeric vectors, imputing each missing cell with the
 * column mean.
 * @param numeric numeric columns by name (null = missing), all of the same length.
 * @throws AppError 422 NO_VALUES (with column) when a chosen column has no value at all.
 */
export function prepareIndicators(
  numeric: Readonly<Record<string, readonly (number | null)[]>>,
  choices: (IndicatorChoice & { source: 'request' | 'default' })[],
): PreparedIndicator[] {
  return choices.map((choice) => {
    const raw = numeric[choice.column];
    if (!raw) throw new AppError(400, 'NOT_NUMERIC', `column "${choice.column}" is not numeric`, { column: choice.column });
    let sum = 0;
    let present = 0;
    for (const v of raw) {
      if (v !== null && Number.isFinite(v)) {
        sum += v;
        present += 1;
      }
    }
    if (present === 0) {
      throw new AppError(422, 'NO_VALUES', `column "${choice.column}" has no values to analyse`, { column: choice.column });
    }
    const mean = sum / present;
    const imputedRows: number[] = [];
    const values = raw.map((v, r) => {
      if (v === null || !Number.isFinite(v)) {
        imputedRows.push(r);
        return mean;
      }
      return v;
    });
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    return {
      ...choice,
      values,
      missing: imputedRows.length,
      imputedWith: imputedRows.length > 0 ? mean : null,
      imputedRows,
      min,
      max,
    };
  });
}
