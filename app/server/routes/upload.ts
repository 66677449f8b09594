/** Upload routes: four paths, one implementation (see ../upload.ts). */
import type { FastifyInstance } from 'fastify';
import type { SessionStore } from '../sessions.ts';
import { handleUpload } from '../upload.ts';
import type { AppConfig } from '../config.ts';

/** Paths that accept an upload. The last two are the incident app's, kept for operators' checks. */
export const UPLOAD_PATHS = [
  '/api/upload',
  '/api/v1/data-analysis/upload',
  '/api/data-analysis/upload',
  '/upload_both_files',
] as const;

/** Register every upload path. */
export function registerUploadRoutes(app: FastifyInstance, store: SessionStore, config: AppConfig): void {
  for (const path of UPLOAD_PATHS) app.post(path, (request, reply) => handleUpload(request, reply, store, config));
}
