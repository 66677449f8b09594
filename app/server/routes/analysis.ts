/** Analysis of the caller's session (by cookie): run, read back, export. */
import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../sessions.ts';
import { requireSession } from '../cookie.ts';
import { AppError } from '../errors.ts';
import { parseAnalysisRequest, publicAnalysis, runAnalysis, type AnalysisInput, type AnalysisResult } from '../analysis/run.ts';
import { analysisToCsv } from '../analysis/export.ts';

async function latestAnalysis(store: SessionStore, id: string): Promise<AnalysisResult> {
  const result = await store.readJson<AnalysisResult>(id, 'analysis.json');
  if (!result) throw new AppError(404, 'NO_ANALYSIS', 'no analysis yet in this session: POST /api/analysis first');
  return result;
}

/** Register POST /api/analysis, GET /api/analysis and GET /api/analysis/export.csv. */
export function registerAnalysisRoutes(app: FastifyInstance, store: SessionStore): void {
  app.post('/api/analysis', async (request) => {
    const id = await requireSession(request, store);
    const { method, indicators } = parseAnalysisRequest(request.body);
    const input = await store.readJson<AnalysisInput>(id, 'analysis-input.json');
    if (!input) throw new AppError(401, 'NO_SESSION', 'the session holds no data');
    const result = runAnalysis(input, method, indicators);
    await store.writeFile(id, 'analysis.json', JSON.stringify(result)).catch((e: NodeJS.ErrnoException) => {
      // Signed out (DELETE /api/session) while the analysis ran: the session directory is gone.
      if (e.code === 'ENOENT') throw new AppError(401, 'NO_SESSION', 'the session was deleted (signed out) during the analysis');
      throw e;
    });
    return { status: 'success', session_id: id, ...publicAnalysis(result) };
  });

  app.get('/api/analysis', async (request) => {
    const id = await requireSession(request, store);
    return { status: 'success', session_id: id, ...publicAnalysis(await latestAnalysis(store, id)) };
  });

  app.get('/api/analysis/export.csv', async (request, reply) => {
    const id = await requireSession(request, store);
    const result = await latestAnalysis(store, id);
    reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="ward-risk-${result.method}.csv"`);
    return analysisToCsv(result);
  });
}
