/**
 * The ranked table as CSV (GET /api/analysis/export.csv).
 *
 * Spreadsheet formula injection (OWASP "CSV Injection"): a text cell that starts with `=`, `+`,
 * `-`, `@`, a tab or a carriage return is read by Excel/LibreOffice as a formula. Every cell that
 * comes from uploaded text (ward names and codes) is neutralised by prefixing a single quote.
 * Numeric cells are written by this code from JavaScript numbers, so they are plain numbers
 * (a leading `-` there is a sign, not a formula, and must stay numeric).
 */
import { stringify } from 'csv-stringify/sync';
import type { AnalysisResult } from './run.ts';

const FORMULA_START = /^[=+\-@\t\r]/;

/** Neutralise a text cell a spreadsheet would read as a formula: prefix it with `'`. */
export function neutralizeCell(text: string): string {
  return FORMULA_START.test(text) ? `'${text}` : text;
}

/**
 * Render an analysis as CSV text (UTF-8 with BOM, so spreadsheets detect the encoding).
 * Columns: rank, ward_name, ward_code, category, score, [index], then per indicator its value
 * and (composite) its scaled value, then the indicators imputed for that ward.
 */
export function analysisToCsv(result: AnalysisResult): string {
  const cols = result.indicators.map((i) => i.column);
  const header = ['rank', 'ward_name', 'ward_code', 'category', 'score'];
  if (result.method === 'pca') header.push('pca_index');
  for (const c of cols) {
    header.push(neutralizeCell(c));
    if (result.method === 'composite') header.push(neutralizeCell(`${c}_scaled`));
  }
  header.push('imputed');
  const records = result.wards.map((w) => {
    const rec: (string | number)[] = [w.rank, neutralizeCell(w.ward_name), neutralizeCell(w.ward_code ?? ''), w.category, w.score];
    if (result.method === 'pca') rec.push(w.index ?? '');
    cols.forEach((_c, k) => {
      rec.push(w.values[k]!);
      if (result.method === 'composite') rec.push(w.scaled?.[k] ?? '');
    });
    rec.push(neutralizeCell(w.imputed.join(';')));
    return rec;
  });
  return '\uFEFF' + stringify([header, ...records], { record_delimiter: '\r\n' });
}
