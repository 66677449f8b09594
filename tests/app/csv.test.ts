/** Understanding uploaded CSVs: the real Niger file, encodings, missing values, and bad input. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseWardCsv } from '../../app/server/table.ts';
import { AppError } from '../../app/server/errors.ts';
import { realDataDir } from './support.ts';

function parse(text: string | Buffer) {
  return parseWardCsv(Buffer.isBuffer(text) ? text : Buffer.from(text, 'utf8'), 'in.csv');
}

function errorOf(text: string | Buffer): AppError {
  try {
    parse(text);
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error('expected the CSV to be refused');
}

describe('the real Niger State table', () => {
  const table = parseWardCsv(readFileSync(join(realDataDir, 'Niger_plus.csv')), 'Niger_plus.csv');
  const col = (name: string) => table.columns.find((c) => c.name === name)!;

  it('has 275 wards and 35 columns, ward names in WardName and codes in WardCode', () => {
    expect(table.rows).toHaveLength(275);
    expect(table.header).toHaveLength(35);
    expect(table.wardColumn).toBe('WardName');
    expect(table.wardCodeColumn).toBe('WardCode');
  });

  it('counts NA as missing, per column, as documented in SOURCE.md', () => {
    expect(col('housing_quality').missing).toBe(17);
    expect(col('building_height').missing).toBe(3);
    expect(col('NDMI').missing).toBe(2);
    expect(col('pfpr').missing).toBe(1);
    expect(col('NDWI').missing).toBe(1);
    expect(col('u5_tpr_rdt').missing).toBe(1);
    expect(col('housing_quality').type).toBe('number');
  });

  it('reads the quoted JSON column with its commas as one text cell', () => {
    expect(col('properties').type).toBe('text');
    const first = table.rows[0]![table.header.indexOf('properties')]!;
    expect(JSON.parse(first)).toEqual({ lgacode: '27002', amapcode: 'NIE NIS AGR' });
  });

  it('recognises leftover index columns and id columns as not indicators', () => {
    expect(col('X.1').role).toBe('index');
    expect(col('X').role).toBe('index');
    expect(col('lga_code').role).toBe('id');
    expect(col('pfpr').role).toBe('indicator');
  });

  it('lists duplicate ward names with their lines', () => {
    const names = table.duplicateWardNames.map((d) => d.name);
    expect(names).toEqual(expect.arrayContaining(['Kawo', 'Kodo', 'Kudu', 'Magajiya', 'Sabon Gari']));
    const kawo = table.duplicateWardNames.find((d) => d.name === 'Kawo')!;
    expect(kawo.count).toBe(2);
    for (const line of kawo.rows) expect(table.rows[table.lines.indexOf(line)]![2]).toBe('Kawo');
  });
});

describe('encodings and cells', () => {
  it('accepts a UTF-8 BOM without it leaking into the first column name', () => {
    const t = parse('\uFEFFWardName,pfpr\nA,0.1\nB,0.2\n');
    expect(t.header[0]).toBe('WardName');
    expect(t.wardColumn).toBe('WardName');
  });

  it('reads CRLF files, empty cells and NA as missing, and non-numbers as text', () => {
    const t = parse('ward_name,pfpr,note\r\nA,,x\r\nB,NA,y\r\nC,0.3,z\r\n');
    expect(t.columns[1]).toMatchObject({ name: 'pfpr', type: 'number', missing: 2, min: 0.3, max: 0.3 });
    expect(t.columns[2]).toMatchObject({ type: 'text' });
  });

  it('points at the first non-number of a mostly numeric column (e.g. a decimal comma)', () => {
    const t = parse('WardName,rain,pfpr\nA,1.5,0.1\nB,"2,5",0.2\nC,3.5,0.3\n');
    expect(t.columns[1]).toMatchObject({ type: 'text', firstNonNumber: { row: 3, value: '2,5' } });
  });
});

describe('bad input names the problem and where it is', () => {
  it.each([
    ['empty file', '', 400, 'EMPTY_FILE', {}],
    ['only a BOM and blank lines', '\uFEFF\n\n', 400, 'EMPTY_FILE', {}],
    ['a header row of numbers', '1,2,3\n4,5,6\n', 422, 'NO_HEADER', { row: 1 }],
    ['a header with no data', 'WardName,pfpr\n', 422, 'NO_DATA_ROWS', { row: 1 }],
    ['a duplicated column name', 'WardName,pfpr,pfpr\nA,1,2\n', 422, 'DUPLICATE_COLUMN', { column: 'pfpr', row: 1 }],
    ['a row with too many cells', 'WardName,pfpr\nA,0.1\nB,0.2,9\nC,0.3\n', 422, 'CSV_BAD_ROW', { row: 3 }],
    ['an unclosed quote', 'WardName,pfpr\nA,0.1\n"B,0.2\nC,0.3\n', 422, 'CSV_BAD_QUOTE', {}],
    ['no ward name column', 'district,pfpr\nA,0.1\n', 422, 'NO_WARD_COLUMN', {}],
    ['a ward column of numbers', 'ward,pfpr\n1,0.1\n2,0.2\n', 422, 'NO_WARD_COLUMN', { column: 'ward' }],
    ['no numeric column', 'WardName,note\nA,x\n', 422, 'NO_NUMERIC_COLUMN', {}],
    ['only id-like numbers', 'WardName,WardCode,lga_code\nA,1,2\n', 422, 'NO_NUMERIC_COLUMN', {}],
    ['a ward with no name', 'WardName,pfpr\nA,0.1\n,0.2\n', 422, 'MISSING_WARD_NAME', { row: 3, column: 'WardName' }],
  ])('%s', (_what, text, status, code, where) => {
    const err = errorOf(text);
    expect(err.statusCode).toBe(status);
    expect(err.code).toBe(code);
    expect(err.where).toMatchObject({ file: 'in.csv', ...where });
    expect(err.message).toContain('in.csv');
  });

  it.each([
    ['a zip archive', Buffer.from([0x50, 0x4b, 0x03, 0x04, 0, 0])],
    ['a PDF', Buffer.from('%PDF-1.7\n...')],
    ['binary data', Buffer.from('WardName,pfpr\nA,\u0000\n')],
  ])('refuses %s as not a CSV', (_what, buf) => {
    expect(errorOf(buf)).toMatchObject({ statusCode: 400, code: 'NOT_CSV' });
  });

  it('refuses a file that is not UTF-8, naming the line', () => {
    const latin1 = Buffer.concat([Buffer.from('WardName,pfpr\nA,0.1\n'), Buffer.from([0x4b, 0xe9, 0x62, 0x62, 0x69]), Buffer.from(',0.2\n')]);
    expect(errorOf(latin1)).toMatchObject({ statusCode: 400, code: 'NOT_UTF8', where: { row: 3 } });
  });
});
