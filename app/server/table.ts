/**
 * Understanding an uploaded ward CSV: parse it with csv-parse (a maintained RFC 4180 parser,
 * which handles quoted fields with commas such as the real data's JSON `properties` column),
 * then describe what was understood: column types, missing values, the ward name and ward code
 * columns, leftover index columns, duplicate ward names.
 *
 * Accepted input: UTF-8 with or without BOM, comma-delimited, a header row, `.` as decimal mark.
 * Missing values: empty cells and the literals in MISSING_TOKENS (R writes `NA`).
 */
import { parse } from 'csv-parse/sync';
import { CsvError } from 'csv-parse';
import { AppError } from './errors.ts';

/** Cell texts read as "missing". `NA` is R's spelling (the real Niger file uses it). */
export const MISSING_TOKENS: ReadonlySet<string> = new Set(['', 'NA', 'N/A', 'NaN', 'NULL', 'null', '#N/A']);

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** What a column is for. Only `indicator` columns are offered for the risk score. */
export type ColumnRole = 'ward_name' | 'ward_code' | 'index' | 'id' | 'indicator' | 'text';

export interface ColumnSummary {
  name: string;
  /** `number` when every present cell is a number; `empty` when every cell is missing. */
  type: 'number' | 'text' | 'empty';
  role: ColumnRole;
  /** Count of missing cells (empty or a MISSING_TOKENS literal). */
  missing: number;
  min?: number;
  max?: number;
  /** For a mostly numeric text column: the first cell that is not a number, to help fix it. */
  firstNonNumber?: { row: number; value: string };
}

export interface DuplicateWard {
  name: string;
  count: number;
  /** 1-based line numbers in the file. */
  rows: number[];
}

/** A parsed ward table. `rows` hold the cell texts, null where missing. */
export interface WardTable {
  file: string;
  header: string[];
  rows: (string | null)[][];
  /** 1-based file line of each row (quoted fields may span lines). */
  lines: number[];
  columns: ColumnSummary[];
  wardColumn: string;
  wardCodeColumn: string | null;
  duplicateWardNames: DuplicateWard[];
}

/** Lowercase, letters and digits only: "Ward_Name" and "ward name" compare equal. */
export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]/g, '');
}

const WARD_NAME_HEADERS = ['wardname', 'ward', 'wardnames', 'wardnm', 'name'];
const WARD_CODE_HEADERS = ['wardcode', 'wardid', 'wardcd'];
/** Row-index columns left by R (`X`, `X.1`), pandas (`Unnamed: 0`) and others. */
const INDEX_HEADER = /^(x\d*|unnamed\d*|index|rownames|rowid|column\d+)$/;
/** Identifier-like numeric columns (codes, ids) are not indicators. */
const ID_HEADER = /(code|^id$|id$|^fid$|objectid|^gid$)/;

function detectBinary(buf: Buffer, file: string): void {
  const head = buf.subarray(0, 8);
  const magic: [string, number[]][] = [
    ['a zip archive (a shapefile or an Excel workbook?)', [0x50, 0x4b, 0x03, 0x04]],
    ['a PDF document', [0x25, 0x50, 0x44, 0x46]],
    ['a PNG image', [0x89, 0x50, 0x4e, 0x47]],
    ['a legacy Excel/Office file', [0xd0, 0xcf, 0x11, 0xe0]],
    ['a gzip archive', [0x1f, 0x8b]],
  ];
  for (const [what, bytes] of magic) {
    if (bytes.every((b, i) => head[i] === b)) {
      throw new AppError(400, 'NOT_CSV', `${file} is ${what}, not a CSV file; export the table as CSV (UTF-8)`, { file });
    }
  }
  const nul = buf.subarray(0, 65536).indexOf(0);
  if (nul >= 0) {
    const row = lineAt(buf, nul);
    throw new AppError(400, 'NOT_CSV', `${file} contains binary data (a NUL byte on line ${row}); it is not a CSV file`, { file, row });
  }
}

function lineAt(buf: Buffer, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (buf[i] === 0x0a) line += 1;
  return line;
}

function decodeUtf8(buf: Buffer, file: string): void {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    const text = new TextDecoder('utf-8').decode(buf);
    const at = text.indexOf('\uFFFD');
    const row = at >= 0 ? text.slice(0, at).split('\n').length : undefined;
    throw new AppError(400, 'NOT_UTF8', `${file} is not valid UTF-8${row ? ` (line ${row})` : ''}; save it as "CSV UTF-8"`, {
      file,
      ...(row ? { row } : {}),
    });
  }
}

function csvErrorToAppError(err: CsvError, file: string): AppError {
  const row = (err as unknown as { lines?: number }).lines;
  const where = { file, ...(typeof row === 'number' ? { row } : {}) };
  switch (err.code) {
    case 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH':
      return new AppError(422, 'CSV_BAD_ROW', `${file} line ${row}: ${err.message.replace(/^Invalid Record Length: /, '')}`, where);
    case 'CSV_QUOTE_NOT_CLOSED':
      return new AppError(422, 'CSV_BAD_QUOTE', `${file}: a quoted field opened before line ${row} is never closed`, where);
    default:
      return new AppError(422, 'CSV_INVALID', `${file} line ${row}: ${err.message}`, where);
  }
}

/**
 * Parse and describe an uploaded ward CSV.
 * @param buf the file's bytes. @param file the file name as uploaded (for messages only).
 * @returns the table with column summaries; missing cells are null.
 * @throws AppError 400 NOT_CSV / EMPTY_FILE / NOT_UTF8 when the bytes are not a UTF-8 text file;
 *   422 CSV_BAD_ROW / CSV_BAD_QUOTE / CSV_INVALID (with row) for malformed CSV; 422 NO_HEADER,
 *   DUPLICATE_COLUMN (with column), NO_DATA_ROWS, NO_WARD_COLUMN, MISSING_WARD_NAME (row, column),
 *   NO_NUMERIC_COLUMN for a CSV that is not a ward table.
 */
export function parseWardCsv(buf: Buffer, file: string): WardTable {
  if (buf.length === 0 || buf.toString('utf8').replace(/^\uFEFF/, '').trim() === '') {
    throw new AppError(400, 'EMPTY_FILE', `${file} is empty`, { file });
  }
  detectBinary(buf, file);
  decodeUtf8(buf, file);

  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(buf, { bom: true, info: true, skip_empty_lines: true, trim: true, relax_column_count: false }) as unknown as typeof records;
  } catch (e) {
    if (e instanceof CsvError) throw csvErrorToAppError(e, file);
    throw e;
  }
  const [headerRecord, ...dataRecords] = records;
  if (!headerRecord) throw new AppError(400, 'EMPTY_FILE', `${file} is empty`, { file });

  const header = headerRecord.record.map((name, i) => (name === '' ? `column_${i + 1}` : name));
  if (header.every((h, i) => NUMBER.test(h) || headerRecord.record[i] === '')) {
    throw new AppError(422, 'NO_HEADER', `${file}: the first line must be a header row naming the columns (it holds only numbers)`, { file, row: 1 });
  }
  const seen = new Set<string>();
  for (const name of header) {
    if (seen.has(name)) {
      throw new AppError(422, 'DUPLICATE_COLUMN', `${file}: column name "${name}" appears more than once in the header`, { file, row: 1, column: name });
    }
    seen.add(name);
  }
  if (dataRecords.length === 0) {
    throw new AppError(422, 'NO_DATA_ROWS', `${file} has a header but no data rows`, { file, row: 1 });
  }

  // In place: a 50,000-row upload is 1.5 million cells, and copying them doubles the garbage.
  const rows = dataRecords.map((r) => {
    const cells = r.record as (string | null)[];
    for (let c = 0; c < cells.length; c++) if (MISSING_TOKENS.has(cells[c] as string)) cells[c] = null;
    return cells;
  });
  const lines = dataRecords.map((r) => r.info.lines);
  const columns = header.map((name, c) => summarizeColumn(name, rows, lines, c));

  const normalized = header.map(normalizeName);
  const wardIndex = firstMatch(normalized, WARD_NAME_HEADERS, columns, 'text');
  if (wardIndex < 0) {
    const numericWard = firstMatch(normalized, WARD_NAME_HEADERS, columns, 'any');
    if (numericWard >= 0) {
      throw new AppError(422, 'NO_WARD_COLUMN', `${file}: column "${header[numericWard]}" holds only numbers; ward names must be text`, {
        file,
        row: 1,
        column: header[numericWard]!,
      });
    }
    throw new AppError(
      422,
      'NO_WARD_COLUMN',
      `${file}: no ward name column; name one column "WardName" (also accepted: ward, ward_name, name)`,
      { file, row: 1 },
    );
  }
  const wardColumn = header[wardIndex]!;
  columns[wardIndex]!.role = 'ward_name';
  const codeIndex = firstMatch(normalized, WARD_CODE_HEADERS, columns, 'any');
  if (codeIndex >= 0) columns[codeIndex]!.role = 'ward_code';

  rows.forEach((row, r) => {
    if (row[wardIndex] == null) {
      throw new AppError(422, 'MISSING_WARD_NAME', `${file} line ${lines[r]}: the ward name is empty`, {
        file,
        row: lines[r]!,
        column: wardColumn,
      });
    }
  });
  if (!columns.some((c) => c.role === 'indicator')) {
    throw new AppError(
      422,
      'NO_NUMERIC_COLUMN',
      `${file}: no numeric indicator column (every column is text, an id, or empty); numbers must use "." as decimal mark`,
      { file },
    );
  }

  return {
    file,
    header,
    rows,
    lines,
    columns,
    wardColumn,
    wardCodeColumn: codeIndex >= 0 ? header[codeIndex]! : null,
    duplicateWardNames: findDuplicates(rows, lines, wardIndex),
  };
}

function firstMatch(normalized: string[], wanted: string[], columns: ColumnSummary[], type: 'text' | 'any'): number {
  for (const w of wanted) {
    const i = normalized.indexOf(w);
    if (i >= 0 && (type === 'any' || columns[i]!.type !== 'number')) return i;
  }
  return -1;
}

function summarizeColumn(name: string, rows: (string | null)[][], lines: number[], c: number): ColumnSummary {
  let missing = 0;
  let numbers = 0;
  let min = Infinity;
  let max = -Infinity;
  let firstNonNumber: { row: number; value: string } | undefined;
  let isSequence = true;
  for (let r = 0; r < rows.length; r++) {
    const cell = rows[r]![c];
    if (cell == null) {
      missing += 1;
      isSequence = false;
      continue;
    }
    if (NUMBER.test(cell)) {
      numbers += 1;
      const v = Number(cell);
      if (v < min) min = v;
      if (v > max) max = v;
      // A leftover row index counts 1, 2, 3... (R) or 0, 1, 2... (pandas).
      if (isSequence && v !== r && v !== r + 1) isSequence = false;
    } else {
      isSequence = false;
      firstNonNumber ??= { row: lines[r]!, value: cell.slice(0, 40) };
    }
  }
  const present = rows.length - missing;
  const type = present === 0 ? 'empty' : numbers === present ? 'number' : 'text';
  const norm = normalizeName(name);
  let role: ColumnRole = 'text';
  if (type === 'number') {
    // A sequence alone is not enough (a real indicator may count 1, 2, 3): only an index-like
    // name, or an unnamed column that counts rows, is a leftover index.
    if (INDEX_HEADER.test(norm) || (isSequence && /^column_\d+$/.test(name))) role = 'index';
    else if (ID_HEADER.test(norm)) role = 'id';
    else role = 'indicator';
  }
  const summary: ColumnSummary = { name, type, role, missing };
  if (type === 'number') {
    summary.min = min;
    summary.max = max;
  }
  if (type === 'text' && firstNonNumber && numbers >= present / 2) summary.firstNonNumber = firstNonNumber;
  return summary;
}

function findDuplicates(rows: (string | null)[][], lines: number[], wardIndex: number): DuplicateWard[] {
  const byName = new Map<string, number[]>();
  rows.forEach((row, r) => {
    const name = row[wardIndex]!;
    const list = byName.get(name);
    if (list) list.push(lines[r]!);
    else byName.set(name, [lines[r]!]);
  });
  return [...byName.entries()]
    .filter(([, at]) => at.length > 1)
    .map(([name, at]) => ({ name, count: at.length, rows: at }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
