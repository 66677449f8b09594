/** Reading the caller's own session. The session is named by the cookie and nothing else. */
import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../sessions.ts';
import { clearSessionCookie, requireSession, sessionOf } from '../cookie.ts';
import type { StoredTable, UploadSummary } from '../upload.ts';
import { AppError } from '../errors.ts';

/** Rows returned per page by GET /api/session, unless `limit` says otherwise (max MAX_PAGE). */
export const DEFAULT_PAGE = 1000;
export const MAX_PAGE = 10_000;

function pageParam(raw: unknown, name: string, fallback: number, max: number): number {
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new AppError(400, 'BAD_PARAMETER', `"${name}" must be an integer from 0 to ${max}`);
  }
  return n;
}

/** Register `GET /api/session`, `DELETE /api/session` (sign-out) and the incident app's `GET /api/session/status`. */
export function registerSessionRoutes(app: FastifyInstance, store: SessionStore): void {
  /**
   * The caller's session: summary, header and a page of rows (`?offset=&limit=`).
   * 401 JSON without a valid session cookie.
   */
  app.get('/api/session', async (request) => {
    const id = await requireSession(request, store);
    const query = request.query as Record<string, unknown>;
    const offset = pageParam(query.offset, 'offset', 0, Number.MAX_SAFE_INTEGER);
    const limit = pageParam(query.limit, 'limit', DEFAULT_PAGE, MAX_PAGE);
    const [summary, table, meta] = await Promise.all([
      store.readJson<UploadSummary>(id, 'summary.json'),
      store.readJson<StoredTable>(id, 'table.json'),
      store.readJson<{ created_at: string }>(id, 'meta.json'),
    ]);
    if (!summary || !table) throw new AppError(401, 'NO_SESSION', 'the session holds no data');
    return {
      status: 'success',
      session_id: id,
      created_at: meta?.created_at ?? null,
      ...summary,
      header: table.header,
      offset,
      limit,
      data: table.rows.slice(offset, offset + limit),
    };
  });

  /**
   * Sign out: delete the caller's session on the server (the upload, the parsed table, the
   * boundaries, every analysis) and clear the cookie. Idempotent: 200 with `deleted: false`
   * when the cookie names no live session; the cookie is cleared either way.
   */
  app.delete('/api/session', async (request, reply) => {
    const id = await sessionOf(request, store);
    const deleted = id ? await store.delete(id) : false;
    clearSessionCookie(request, reply);
    if (id) request.log.info({ session: id }, 'session deleted (sign-out)');
    return { status: 'success', deleted };
  });

  /** Whether the caller has a session (never 401: the incident app's clients poll it). */
  app.get('/api/session/status', async (request) => {
    const id = await sessionOf(request, store);
    if (!id) return { status: 'success', active: false, session_id: null, has_data: false };
    const summary = await store.readJson<UploadSummary>(id, 'summary.json');
    return {
      status: 'success',
      active: true,
      session_id: id,
      has_data: summary !== null,
      rows: summary?.rows ?? 0,
      columns: summary?.columns ?? 0,
    };
  });
}
