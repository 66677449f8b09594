/** The ward boundaries of the caller's session, coloured by the latest analysis. */
import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../sessions.ts';
import { requireSession } from '../cookie.ts';
import { AppError } from '../errors.ts';
import type { UploadSummary } from '../upload.ts';
import type { AnalysisResult } from '../analysis/run.ts';
import { joinKey, type BoundaryFeature } from '../shapefile.ts';

/**
 * Register `GET /api/map`: a GeoJSON FeatureCollection in WGS84 longitude/latitude whose
 * feature properties are ward_name, ward_code and, when an analysis was run and the ward
 * joined, rank, score and category (null otherwise). 404 NO_BOUNDARIES without a shapefile.
 */
export function registerMapRoutes(app: FastifyInstance, store: SessionStore): void {
  app.get('/api/map', async (request) => {
    const id = await requireSession(request, store);
    const [summary, boundaries, analysis] = await Promise.all([
      store.readJson<UploadSummary>(id, 'summary.json'),
      store.readJson<{ features: BoundaryFeature[] }>(id, 'boundaries.json'),
      store.readJson<AnalysisResult>(id, 'analysis.json'),
    ]);
    if (!summary?.shapefile || !boundaries) {
      throw new AppError(404, 'NO_BOUNDARIES', 'this session has no ward boundaries: upload a zipped shapefile with the CSV');
    }
    const on = summary.shapefile.join_on;
    const byKey = new Map<string, AnalysisResult['wards'][number]>();
    for (const w of analysis?.wards ?? []) {
      const k = joinKey(on, w.ward_name, w.ward_code);
      // With a name join, a repeated name is ambiguous: first (highest-risk) ward wins, and the
      // upload answer already listed the duplicates.
      if (k !== null && !byKey.has(k)) byKey.set(k, w);
    }
    return {
      type: 'FeatureCollection',
      method: analysis?.method ?? null,
      join_on: on,
      features: boundaries.features.map((f) => {
        const w = byKey.get(joinKey(on, f.properties.ward_name, f.properties.ward_code) ?? '');
        return {
          type: 'Feature',
          geometry: f.geometry,
          properties: {
            ...f.properties,
            rank: w?.rank ?? null,
            score: w?.score ?? null,
            category: w?.category ?? null,
          },
        };
      }),
    };
  });
}
