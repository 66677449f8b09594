/**
 * What one simulated user does in the session checks: upload a CSV with a marker, read its
 * session back. Each user has its own cookie jar and connection pool, and may plant another
 * user's session id where a careless app might look for it.
 */
import { Blob } from 'node:buffer';
import { FormData, type Agent } from 'undici';
import { CookieJar } from './cookie-jar.ts';
import { httpRequest, parseJson, snippet } from './http.ts';

/** Where a forged id is put. The incident's app trusted the form; the others are as easy to get wrong. */
export type ForgeryVector = 'form' | 'query' | 'header' | 'cookie';
export const FORGERY_VECTORS: readonly ForgeryVector[] = ['form', 'query', 'header', 'cookie'];

/** A client-chosen session id and where it is sent. */
export interface ForgedId {
  vector: ForgeryVector;
  id: string;
}

export interface SessionClient {
  /** Base URL (the proxy), without a trailing slash. */
  base: string;
  jar: CookieJar;
  pool: Agent;
  timeoutMs: number;
}

export interface UploadOutcome {
  status: number | null;
  sessionId: string | null;
  /** Cookie names the response set. */
  cookies: string[];
  /** Set when the upload did not answer 200 with a session_id. */
  error?: string;
}

/** A small CSV in the shape the app expects, with the marker in cells of every row. */
export function markerCsv(marker: string): string {
  return ['WardName,population,tpr', `${marker},1200,0.31`, `${marker}-b,800,0.12`, `${marker}-c,450,0.07`, ''].join('\n');
}

function request(client: SessionClient, forged: ForgedId | undefined): { query: string; headers: Record<string, string> } {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (forged?.vector === 'header') headers['x-session-id'] = forged.id;
  // Planted in the jar (not just this request) so it keeps being sent, as a browser would.
  if (forged?.vector === 'cookie') client.jar.set('session_id', forged.id);
  const cookie = client.jar.header();
  if (cookie) headers.cookie = cookie;
  const query = forged?.vector === 'query' ? `?session_id=${encodeURIComponent(forged.id)}` : '';
  return { query, headers };
}

/**
 * Upload a marker CSV as multipart field `field` to `path`; store the cookies it sets.
 * @param forged optionally send another session's id in the given place.
 * @returns status, the `session_id` of the JSON answer, cookie names set; `error` unless 200
 *   with a session_id. Never throws for network errors.
 */
export async function uploadCsv(
  client: SessionClient,
  path: string,
  field: string,
  marker: string,
  forged?: ForgedId,
): Promise<UploadOutcome> {
  const form = new FormData();
  // The forged field goes first so a streaming parser has seen it by the time the file arrives.
  if (forged?.vector === 'form') form.append('session_id', forged.id);
  form.append(field, new Blob([markerCsv(marker)], { type: 'text/csv' }), `${marker}.csv`);
  const { query, headers } = request(client, forged);
  const res = await httpRequest(client.base + path + query, {
    method: 'POST',
    headers,
    body: form,
    timeoutMs: client.timeoutMs,
    dispatcher: client.pool,
  });
  if (!res.ok) return { status: null, sessionId: null, cookies: [], error: res.error };
  const cookies = client.jar.store(res.headers['set-cookie']);
  const body = parseJson(res.text) as { session_id?: unknown } | undefined;
  const sessionId = typeof body?.session_id === 'string' ? body.session_id : null;
  if (res.status !== 200) return { status: res.status, sessionId, cookies, error: `HTTP ${res.status}: ${snippet(res.text)}` };
  if (sessionId === null) return { status: res.status, sessionId, cookies, error: `no session_id in answer: ${snippet(res.text)}` };
  return { status: res.status, sessionId, cookies };
}

/**
 * GET the session path with the client's cookies, plus a forged id in the query or header.
 * A forged form or cookie id is not sent again: a GET has no form, and planting the cookie
 * again would overwrite the session cookie the upload answer set.
 * @returns the status and body text, or `status: null` and `error` for a network failure.
 */
export async function readSession(
  client: SessionClient,
  path: string,
  forged?: ForgedId,
): Promise<{ status: number | null; text: string; error?: string }> {
  const resend = forged?.vector === 'query' || forged?.vector === 'header' ? forged : undefined;
  const { query, headers } = request(client, resend);
  const res = await httpRequest(client.base + path + query, { headers, timeoutMs: client.timeoutMs, dispatcher: client.pool });
  if (!res.ok) return { status: null, text: '', error: res.error };
  return { status: res.status, text: res.text };
}

/** One line describing a non-200 or failed read. */
export function describeRead(res: { status: number | null; text: string; error?: string }): string {
  return res.error ?? `HTTP ${res.status}: ${snippet(res.text)}`;
}
