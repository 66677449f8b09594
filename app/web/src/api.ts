/**
 * Calls to the backend. The session lives only in the server's HttpOnly cookie: nothing here
 * sends a session id or stores one in localStorage/sessionStorage (the incident's first cause).
 */
import type { Geometry } from 'geojson';
// The server's own type of this part of the answer (type-only: nothing of the server is bundled).
import type { IndicatorReport, VariablesReport } from '../../server/analysis/run.ts';

export interface ColumnDetail {
  name: string;
  type: 'number' | 'text' | 'empty';
  role: 'ward_name' | 'ward_code' | 'index' | 'id' | 'indicator' | 'text';
  missing: number;
  min?: number;
  max?: number;
}

export interface UploadResult {
  status: 'success';
  session_id: string;
  file: string;
  rows: number;
  columns: number;
  ward_column: string;
  ward_code_column: string | null;
  column_details: ColumnDetail[];
  missing_values: Record<string, number>;
  duplicate_ward_names: { name: string; count: number; rows: number[] }[];
  /** Absent in sessions stored by releases before it existed. */
  warnings?: string[];
  shapefile?: ShapefileReport;
}

export interface ShapefileReport {
  file: string;
  feature_count: number;
  name_field: string | null;
  code_field: string | null;
  crs: { prj: string | null; geographic: boolean; reprojected: boolean };
  join_on: 'ward_code' | 'ward_name';
  matched: number;
  unmatched_csv: { ward_name: string; ward_code: string | null; line: number }[];
  unmatched_features: { ward_name: string | null; ward_code: string | null }[];
  unmatched_csv_count?: number;
  unmatched_features_count?: number;
  ambiguous: string[];
}

export type Direction = 'positive' | 'negative';
export type Method = 'composite' | 'pca';
export type Category = 'high' | 'medium' | 'low';

export interface WardResult {
  rank: number;
  line: number;
  ward_name: string;
  ward_code: string | null;
  category: Category;
  score: number;
  index?: number;
  values: Record<string, number>;
  imputed: string[];
}

export interface AnalysisResult {
  status: 'success';
  method: Method;
  formula: string;
  indicators: IndicatorReport[];
  categories: Record<Category, number>;
  pca?: {
    explained_variance: number;
    suitability: { kmo: number | null; bartlett: { chi2: number | null; df: number; p_value: number | null }; suitable: boolean };
    dropped: string[];
  };
  /** Absent in analyses stored by releases before it existed. */
  variables?: VariablesReport;
  warnings: string[];
  wards: WardResult[];
}

export interface MapFeature {
  type: 'Feature';
  geometry: Geometry;
  properties: { ward_name: string | null; ward_code: string | null; rank: number | null; score: number | null; category: Category | null };
}

export interface MapData {
  type: 'FeatureCollection';
  join_on: 'ward_code' | 'ward_name';
  features: MapFeature[];
}

export interface SessionData extends UploadResult {
  header: string[];
  data: (string | null)[][];
}

export interface VersionInfo {
  release: string;
  digest: string | null;
  instance: string | null;
}

/** An error answer from the API, with the location of bad input when the server gave one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly where: { file?: string; row?: number; column?: string } = {},
  ) {
    super(message);
  }
}

async function parseAnswer<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(res.status, 'BAD_ANSWER', `the server answered ${res.status} with something that is not JSON`);
  }
  if (!res.ok) {
    const b = (body ?? {}) as { code?: string; message?: string; file?: string; row?: number; column?: string };
    throw new ApiError(res.status, b.code ?? `HTTP_${res.status}`, b.message ?? `request failed (${res.status})`, {
      file: b.file,
      row: b.row,
      column: b.column,
    });
  }
  return body as T;
}

/**
 * Upload a CSV (and optionally a zipped shapefile) as a new session, reporting progress 0..1.
 * XMLHttpRequest rather than fetch because only it reports upload progress.
 */
export function uploadFiles(csv: File, shapefile: File | null, onProgress: (fraction: number) => void): Promise<UploadResult> {
  const form = new FormData();
  form.append('file', csv);
  if (shapefile) form.append('shapefile', shapefile);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/upload');
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the upload failed: network error'));
    xhr.onload = () => {
      const res = new Response(xhr.responseText, { status: xhr.status });
      parseAnswer<UploadResult>(res).then(resolve, reject);
    };
    xhr.send(form);
  });
}

/** The caller's session, or null when there is none. */
export async function fetchSession(): Promise<SessionData | null> {
  // Ask the status route first: it answers 200 either way, so a first visit logs no 401.
  const status = await parseAnswer<{ active: boolean; has_data: boolean }>(await fetch('/api/session/status', { credentials: 'same-origin' }));
  if (!status.active || !status.has_data) return null;
  const res = await fetch('/api/session', { credentials: 'same-origin' });
  if (res.status === 401) return null;
  return parseAnswer<SessionData>(res);
}

/** Run an analysis on the caller's session. `indicators` undefined = the server's defaults. */
export async function runAnalysis(method: Method, indicators?: { column: string; direction: Direction }[]): Promise<AnalysisResult> {
  const res = await fetch('/api/analysis', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(indicators ? { method, indicators } : { method }),
  });
  return parseAnswer<AnalysisResult>(res);
}

/** The latest analysis of the session, or null when there is none yet. */
export async function fetchAnalysis(): Promise<AnalysisResult | null> {
  const res = await fetch('/api/analysis', { credentials: 'same-origin' });
  if (res.status === 404 || res.status === 401) return null;
  return parseAnswer<AnalysisResult>(res);
}

/** Ward boundaries coloured by the latest analysis, or null without a shapefile. */
export async function fetchMap(): Promise<MapData | null> {
  const res = await fetch('/api/map', { credentials: 'same-origin' });
  if (res.status === 404 || res.status === 401) return null;
  return parseAnswer<MapData>(res);
}

/** Sign out: the server deletes the session's data and clears the cookie. */
export async function signOut(): Promise<void> {
  await parseAnswer<{ deleted: boolean }>(await fetch('/api/session', { method: 'DELETE', credentials: 'same-origin' }));
}

/** The running release (for the footer). */
export async function fetchVersion(): Promise<VersionInfo> {
  return parseAnswer<VersionInfo>(await fetch('/version', { credentials: 'same-origin' }));
}
