/**
 * Choosing indicators and their directions, and turning table columns into complete numeric
 * vectors (missing values imputed with the column mean, and reported, never dropped).
 */
import { AppError } from '../errors.ts';
import type { ColumnSummary } from '../table.ts';
import { matchVariable, type VariableKind } from './variables.ts';

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
export interface PreparedIndicator extends Choice {
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

/** What the synonym table made of a chosen column (null fields when it is not in the table). */
export interface ChoiceVariable {
  /** Variable id in the synonym table (variables.ts), e.g. `u5_tpr`. */
  id: string;
  label: string;
  kind: VariableKind;
  /** The synonym the column name matched (why it was recognised). */
  synonym: string;
  /** Source of the direction rule. */
  rule_source: string;
}

/** A chosen indicator: column, direction, who chose it, and how the synonym table read it. */
export interface Choice extends IndicatorChoice {
  source: 'request' | 'default';
  variable: ChoiceVariable | null;
}

/** A numeric column left out of a default analysis, and why. */
export interface NotUsed {
  column: string;
  reason: string;
}

function choiceVariable(column: string): ChoiceVariable | null {
  const m = matchVariable(column);
  if (!m) return null;
  return { id: m.variable.id, label: m.variable.label, kind: m.variable.kind, synonym: m.synonym, rule_source: m.variable.source };
}

/**
 * The default direction of a column from the synonym table, or null when the column is not a
 * recognised risk variable (unknown, or a size measure such as population).
 */
export function knownDirection(column: string): Direction | null {
  return matchVariable(column)?.variable.direction ?? null;
}

/**
 * Choose the indicators: the request's when given, else every indicator column the synonym
 * table recognises as a risk variable (variables.ts), with its direction. Size measures
 * (population, area) and unrecognised columns are never defaults; they are listed in `notUsed`.
 * @returns the choices and, for a default choice, the numeric columns left out with the reason.
 * @throws AppError 400 BAD_INDICATORS / UNKNOWN_COLUMN / NOT_NUMERIC (with column) for a bad request;
 *   422 NO_KNOWN_INDICATORS when defaults are asked for and no column is a recognised risk variable
 *   (the app does not guess directions: the analyst chooses the indicators).
 */
export function chooseIndicators(columns: ColumnSummary[], requested: unknown): { choices: Choice[]; notUsed: NotUsed[] } {
  const byName = new Map(columns.map((c) => [c.name, c]));
  if (requested === undefined || requested === null) {
    const choices: Choice[] = [];
    const notUsed: NotUsed[] = [];
    for (const c of columns.filter((col) => col.role === 'indicator')) {
      const variable = choiceVariable(c.name);
      const direction = knownDirection(c.name);
      if (variable && direction) choices.push({ column: c.name, direction, source: 'default', variable });
      else if (variable) notUsed.push({ column: c.name, reason: `a size measure (${variable.label}), not a risk: never a default` });
      else notUsed.push({ column: c.name, reason: 'not in the synonym table (choose it in the request to use it)' });
    }
    if (choices.length === 0) {
      const listed = notUsed.map((n) => n.column).join(', ');
      throw new AppError(
        422,
        'NO_KNOWN_INDICATORS',
        `no column is a recognised malaria risk variable (numeric columns: ${listed}; population and area are sizes, never risks). ` +
          'Name the burden measure as in the synonym table (e.g. u5_tpr, tpr, pfpr, incidence; see app/README.md), ' +
          'or choose the indicators and their directions yourself',
      );
    }
    return { choices, notUsed };
  }
  if (!Array.isArray(requested) || requested.length === 0) {
    throw new AppError(400, 'BAD_INDICATORS', '"indicators" must be a non-empty list of {column, direction}');
  }
  const seen = new Set<string>();
  const choices = requested.map((item: unknown, i): Choice => {
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
    return { column, direction, source: 'request', variable: choiceVariable(column) };
  });
  return { choices, notUsed: [] };
}

/**
 * Take the chosen columns as complete numeric vectors, imputing each missing cell with the
 * column mean.
 * @param numeric numeric columns by name (null = missing), all of the same length.
 * @throws AppError 422 NO_VALUES (with column) when a chosen column has no value at all.
 */
export function prepareIndicators(
  numeric: Readonly<Record<string, readonly (number | null)[]>>,
  choices: Choice[],
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
