/**
 * The one upload implementation behind every upload route (`/api/upload`,
 * `/api/v1/data-analysis/upload`, and the incident app's `/api/data-analysis/upload` and
 * `/upload_both_files`). It never reads a session id from the client: not from form fields,
 * the query, headers or cookies. Every successful upload is a new session.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from './errors.ts';
import { parseWardCsv, type WardTable } from './table.ts';
import type { SessionFile, SessionStore } from './sessions.ts';
import { setSessionCookie } from './cookie.ts';
import { joinAndCheck, readShapefileZip, type JoinReport, type ShapefileSummary } from './shapefile.ts';
import type { AppConfig } from './config.ts';
import { analysisInputOf } from './analysis/run.ts';

/** Multipart file fields that carry the CSV (`file` is ours, `csv_file` the incident app's). */
export const CSV_FIELDS: ReadonlySet<string> = new Set(['file', 'csv_file']);
/** Multipart file field for the optional zipped shapefile. */
export const SHAPEFILE_FIELD = 'shapefile';

interface ReceivedFile {
  field: string;
  filename: string;
  buf: Buffer;
}

/** The summary of an uploaded table, stored as `summary.json` and returned to the uploader. */
export interface UploadSummary {
  file: string;
  rows: number;
  columns: number;
  ward_column: string;
  ward_code_column: string | null;
  column_details: WardTable['columns'];
  missing_values: Record<string, number>;
  duplicate_ward_names: WardTable['duplicateWardNames'];
  /** What the analyst should know about the upload (e.g. wards without a polygon); empty when nothing. */
  warnings: string[];
  /** Present when a shapefile zip came with the CSV. */
  shapefile?: ShapefileSummary & JoinReport;
}

/** What is stored as `table.json`: the parsed cells (null = missing) and their file lines. */
export interface StoredTable {
  header: string[];
  rows: (string | null)[][];
  lines: number[];
}

/**
 * Read the multipart body: the CSV (required) and an optional shapefile zip. Every other part,
 * including any `session_id` field, is drained and ignored.
 * @throws AppError 415 NOT_MULTIPART, 400 NO_FILE / TOO_MANY_FILES; the multipart plugin's
 *   413 FST_REQ_FILE_TOO_LARGE passes through when a file exceeds the size limit.
 */
async function receiveFiles(request: FastifyRequest): Promise<{ csv: ReceivedFile; shapefile: ReceivedFile | null }> {
  if (!request.isMultipart()) {
    throw new AppError(415, 'NOT_MULTIPART', 'send the upload as multipart/form-data with the CSV in the field "file"');
  }
  let csv: ReceivedFile | null = null;
  let shapefile: ReceivedFile | null = null;
  for await (const part of request.parts()) {
    if (part.type !== 'file') continue;
    const buf = await part.toBuffer();
    // A browser form with an empty file input still sends the part, with no name and no bytes.
    if (buf.length === 0 && !part.filename) continue;
    const received = { field: part.fieldname, filename: baseName(part.filename) || part.fieldname, buf };
    if (CSV_FIELDS.has(part.fieldname)) {
      if (csv) throw new AppError(400, 'TOO_MANY_FILES', 'send exactly one CSV file (field "file")');
      csv = received;
    } else if (part.fieldname === SHAPEFILE_FIELD) {
      if (shapefile) throw new AppError(400, 'TOO_MANY_FILES', 'send at most one shapefile zip (field "shapefile")');
      shapefile = received;
    }
  }
  if (!csv) throw new AppError(400, 'NO_FILE', 'no CSV file in the upload: send it in the multipart field "file"');
  return { csv, shapefile };
}

function baseName(name: string | undefined): string {
  // Browsers send a bare name; other clients may send a path. It is only shown, never used as a path.
  return (name ?? '').split(/[\\/]/).pop()!.slice(0, 200);
}

/** Build the upload summary of a parsed table. */
export function summarize(table: WardTable): UploadSummary {
  const missing: Record<string, number> = {};
  for (const c of table.columns) if (c.missing > 0) missing[c.name] = c.missing;
  return {
    file: table.file,
    rows: table.rows.length,
    columns: table.header.length,
    ward_column: table.wardColumn,
    ward_code_column: table.wardCodeColumn,
    column_details: table.columns,
    missing_values: missing,
    duplicate_ward_names: table.duplicateWardNames,
    warnings: [],
  };
}

/**
 * Handle an upload: validate the CSV, store a new session atomically, set its cookie.
 * @returns the JSON body `{status: "success", session_id, rows, columns, ...summary}`.
 * @throws AppError (4xx) for bad input; nothing is stored in that case.
 */
export async function handleUpload(request: FastifyRequest, reply: FastifyReply, store: SessionStore, config: AppConfig) {
  const { csv, shapefile } = await receiveFiles(request);
  const table = parseWardCsv(csv.buf, csv.filename);
  const summary = summarize(table);
  const stored: StoredTable = { header: table.header, rows: table.rows, lines: table.lines };
  const files: SessionFile[] = [
    { name: 'upload.csv', content: csv.buf },
    { name: 'table.json', content: JSON.stringify(stored) },
    { name: 'analysis-input.json', content: JSON.stringify(analysisInputOf(table)) },
  ];
  const meta: Record<string, unknown> = { created_at: new Date().toISOString(), files: { csv: { name: csv.filename, bytes: csv.buf.length } } };
  if (shapefile) {
    // Read and checked before the session exists, so a bad zip leaves nothing behind.
    const boundaries = await readShapefileZip(shapefile.buf, shapefile.filename, config.zipMaxBytes);
    const wardIdx = table.header.indexOf(table.wardColumn);
    const codeIdx = table.wardCodeColumn ? table.header.indexOf(table.wardCodeColumn) : -1;
    const wards = table.rows.map((row, r) => ({
      ward_name: row[wardIdx]!,
      ward_code: codeIdx >= 0 ? (row[codeIdx] ?? null) : null,
      line: table.lines[r]!,
    }));
    const { join, warnings } = joinAndCheck(wards, boundaries.features, boundaries.summary.code_field !== null, {
      csv: csv.filename,
      shapefile: shapefile.filename,
    });
    summary.shapefile = { ...boundaries.summary, ...join };
    summary.warnings.push(...warnings);
    files.push({ name: 'boundaries.json', content: JSON.stringify({ type: 'FeatureCollection', features: boundaries.features }) });
    (meta.files as Record<string, unknown>).shapefile = { name: shapefile.filename, bytes: shapefile.buf.length };
  }
  files.push({ name: 'summary.json', content: JSON.stringify(summary) }, { name: 'meta.json', content: JSON.stringify(meta) });
  const sessionId = await store.create(files);
  setSessionCookie(request, reply, sessionId);
  request.log.info({ session: sessionId, rows: summary.rows, columns: summary.columns }, 'upload stored');
  return { status: 'success' as const, session_id: sessionId, ...summary };
}
