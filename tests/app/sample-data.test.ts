/** The committed sample data: reproducible from its generator, and usable end to end. */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMITTED_SAMPLE, generateSample } from '../../app/sample-data/generate.ts';
import { buildRelease, repoRoot, run, sessionCookieOf, startApp, tempDir, upload, type RunningApp } from './support.ts';

const sampleDir = join(repoRoot, 'app', 'sample-data');

describe('sample data', () => {
  it('is exactly what the committed generator writes (run through its command line)', async () => {
    const out = await tempDir('sample');
    await run(process.execPath, ['--import', 'tsx', join(sampleDir, 'generate.ts'), '--out', out], { cwd: repoRoot });
    for (const f of ['sample_wards.csv', 'sample_wards.zip']) {
      expect((await readFile(join(out, f))).equals(await readFile(join(sampleDir, f))), f).toBe(true);
    }
  });

  it('changes with the seed', async () => {
    const a = await generateSample(COMMITTED_SAMPLE);
    const b = await generateSample({ ...COMMITTED_SAMPLE, seed: COMMITTED_SAMPLE.seed + 1 });
    expect(a.csv).not.toBe(b.csv);
  });

  describe('through the real server', () => {
    let app: RunningApp;
    let release: string;
    beforeAll(async () => {
      release = await buildRelease();
      app = await startApp(release);
    });
    afterAll(async () => {
      await app?.stop();
    });

    it('is served at /sample-data/ from the release', async () => {
      const res = await fetch(`${app.url}/sample-data/sample_wards.csv`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(readFileSync(join(sampleDir, 'sample_wards.csv'), 'utf8'));
      expect((await fetch(`${app.url}/sample-data/generate.ts`)).status).toBe(404);
    });

    it('uploads with its shapefile, joins every ward, and ranks them', async () => {
      const res = await upload(app.url, new Uint8Array(readFileSync(join(sampleDir, 'sample_wards.csv'))), {
        filename: 'sample_wards.csv',
        files: { shapefile: { name: 'sample_wards.zip', content: new Uint8Array(readFileSync(join(sampleDir, 'sample_wards.zip'))) } },
      });
      const body = (await res.json()) as {
        rows: number;
        missing_values: Record<string, number>;
        duplicate_ward_names: unknown[];
        shapefile: { feature_count: number; matched: number; join_on: string };
      };
      expect(res.status).toBe(200);
      expect(body.rows).toBe(60);
      expect(body.duplicate_ward_names).toHaveLength(1);
      expect(Object.keys(body.missing_values).sort()).toEqual(['NDMI', 'building_height', 'housing_quality', 'pfpr']);
      expect(body.shapefile).toMatchObject({ feature_count: 60, matched: 60, join_on: 'ward_code' });
      const cookie = sessionCookieOf(res)!;
      for (const method of ['composite', 'pca']) {
        const analysis = await fetch(`${app.url}/api/analysis`, {
          method: 'POST',
          headers: { cookie, 'content-type': 'application/json' },
          body: JSON.stringify({ method }),
        });
        expect(analysis.status).toBe(200);
        expect(((await analysis.json()) as { wards: unknown[] }).wards).toHaveLength(60);
      }
    });
  });
});
