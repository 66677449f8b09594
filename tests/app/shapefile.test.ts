/** Zipped shapefiles: the real Niger boundaries, reprojection, the ward join, and unsafe zips. */
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import proj4 from 'proj4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readShapefileZip, joinWards } from '../../app/server/shapefile.ts';
import { AppError } from '../../app/server/errors.ts';
import { writeShapefileZip, zipEntries, type DbfField, type PolygonRecord } from '../../app/sample-data/shapefile-writer.ts';
import { buildRelease, realDataDir, repoRoot, sessionCookieOf, startApp, upload, type RunningApp } from './support.ts';

const nigerCsv = new Uint8Array(readFileSync(join(realDataDir, 'Niger_plus.csv')));
const nigerZip = new Uint8Array(readFileSync(join(realDataDir, 'Niger_State.zip')));

const FIELDS: DbfField[] = [
  { name: 'WardName', type: 'C', length: 40 },
  { name: 'WardCode', type: 'C', length: 12 },
];

/** Two unit squares side by side (in whatever units `scale` gives), wards A and B. */
function twoWards(origin: [number, number] = [4, 9], size = 0.1): PolygonRecord[] {
  const [x, y] = origin;
  const square = (x0: number): [number, number][] => [
    [x0, y],
    [x0 + size, y],
    [x0 + size, y + size],
    [x0, y + size],
    [x0, y],
  ];
  return [
    { rings: [square(x)], attributes: { WardName: 'Alpha', WardCode: 'W1' } },
    { rings: [square(x + size)], attributes: { WardName: 'Beta', WardCode: 'W2' } },
  ];
}

async function refusal(buf: Buffer, maxBytes = 10_000_000): Promise<AppError> {
  try {
    await readShapefileZip(buf, 'wards.zip', maxBytes);
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error('expected the zip to be refused');
}

describe('reading shapefile zips', () => {
  it('reads the real Niger State boundaries: 275 polygons in WGS84, ward code and name fields found', async () => {
    const { summary, features } = await readShapefileZip(Buffer.from(nigerZip), 'Niger_State.zip', 50_000_000);
    expect(summary.feature_count).toBe(275);
    expect(features).toHaveLength(275);
    expect(summary.code_field).toBe('WardCode');
    expect(summary.name_field).toBe('WardName');
    expect(summary.crs).toMatchObject({ geographic: true, reprojected: false });
    expect(summary.bbox[0]).toBeCloseTo(3.58, 2);
    expect(summary.bbox[1]).toBeCloseTo(8.18, 2);
    expect(summary.bbox[2]).toBeCloseTo(7.38, 2);
    expect(summary.bbox[3]).toBeCloseTo(11.39, 2);
  });

  it('reprojects projected coordinates to longitude/latitude as the .prj says (UTM 31N)', async () => {
    const utm31 =
      'PROJCS["WGS_1984_UTM_Zone_31N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],' +
      'PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",3.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]';
    const toUtm = proj4('EPSG:4326', '+proj=utm +zone=31 +datum=WGS84 +units=m +no_defs');
    const lonLat = twoWards([4, 9], 0.1);
    const projected = lonLat.map((r) => ({ ...r, rings: r.rings.map((ring) => ring.map((p) => toUtm.forward(p) as [number, number])) }));
    expect(projected[0]!.rings[0]![0]![0]).toBeGreaterThan(100_000); // metres, not degrees
    const { summary, features } = await readShapefileZip(await writeShapefileZip('utm', FIELDS, projected, utm31), 'utm.zip', 10_000_000);
    expect(summary.crs).toMatchObject({ geographic: false, reprojected: true });
    const corners = (features[0]!.geometry as { coordinates: number[][][] }).coordinates[0]!;
    for (const [lon, lat] of corners) {
      expect(Math.min(Math.abs(lon! - 4), Math.abs(lon! - 4.1))).toBeLessThan(1e-5);
      expect(Math.min(Math.abs(lat! - 9), Math.abs(lat! - 9.1))).toBeLessThan(1e-5);
    }
  });

  it('refuses projected coordinates without a .prj', async () => {
    const metres = twoWards([500_000, 1_000_000], 1000);
    expect(await refusal(await writeShapefileZip('m', FIELDS, metres, null))).toMatchObject({ statusCode: 422, code: 'SHAPEFILE_NO_PRJ' });
  });

  it('refuses a file that is not a zip', async () => {
    expect(await refusal(Buffer.from('WardName,pfpr\n'))).toMatchObject({ statusCode: 400, code: 'NOT_ZIP', where: { file: 'wards.zip' } });
  });

  it('refuses a zip without .shp or .dbf, naming what is missing', async () => {
    const onlyShp = await zipEntries([{ name: 'w.shp', data: Buffer.alloc(100) }]);
    const err = await refusal(onlyShp);
    expect(err).toMatchObject({ statusCode: 422, code: 'SHAPEFILE_MISSING_PARTS' });
    expect(err.message).toContain('.dbf');
    const nothing = await zipEntries([{ name: 'readme.txt', data: Buffer.from('hi') }]);
    expect((await refusal(nothing)).message).toMatch(/no \.shp and no \.dbf/);
  });

  it.each(['../evil.shp', '/etc/evil.shp', '..\\evil.shp', 'C:/evil.shp'])('refuses an entry whose path escapes the directory: %s', async (bad) => {
    const placeholder = 'x'.repeat(bad.length - 4) + '.shp';
    const zip = await zipEntries([{ name: placeholder, data: Buffer.from('x') }]);
    // yazl refuses to write such names, so patch them into the archive (local and central headers).
    const patched = Buffer.from(zip.toString('latin1').split(placeholder).join(bad), 'latin1');
    const err = await refusal(patched);
    expect(err).toMatchObject({ statusCode: 400, code: 'ZIP_UNSAFE_PATH', where: { file: bad } });
  });

  it('refuses a zip that expands past the limit', async () => {
    const records = twoWards();
    const zip = await zipEntries([
      ...(await (async () => {
        const z = await writeShapefileZip('w', FIELDS, records);
        return [{ name: 'pad.bin', data: Buffer.alloc(2_000_000) }, { name: 'w.zip', data: z }];
      })()),
    ]);
    expect(zip.length).toBeLessThan(50_000);
    expect(await refusal(zip, 1_000_000)).toMatchObject({ statusCode: 413, code: 'ZIP_TOO_LARGE' });
  });
});

describe('joining wards to polygons', () => {
  const features = [
    { type: 'Feature' as const, geometry: { type: 'Point' as const, coordinates: [0, 0] }, properties: { ward_name: 'Kawo', ward_code: 'NI1' } },
    { type: 'Feature' as const, geometry: { type: 'Point' as const, coordinates: [0, 0] }, properties: { ward_name: 'Kawo', ward_code: 'NI2' } },
    { type: 'Feature' as const, geometry: { type: 'Point' as const, coordinates: [0, 0] }, properties: { ward_name: 'Lone', ward_code: 'NI9' } },
  ];

  it('joins on the ward code when both sides have one, so repeated names stay distinct', () => {
    const report = joinWards(
      [
        { ward_name: 'Kawo', ward_code: 'NI1', line: 2 },
        { ward_name: 'Kawo', ward_code: 'NI2', line: 3 },
        { ward_name: 'Extra', ward_code: 'NI5', line: 4 },
      ],
      features,
      true,
    );
    expect(report.join_on).toBe('ward_code');
    expect(report.matched).toBe(2);
    expect(report.unmatched_csv).toEqual([{ ward_name: 'Extra', ward_code: 'NI5', line: 4 }]);
    expect(report.unmatched_features).toEqual([{ ward_name: 'Lone', ward_code: 'NI9' }]);
    expect(report.ambiguous).toEqual([]);
  });

  it('joins on names, ignoring case and spacing, when the CSV has no codes, and flags repeated names', () => {
    const report = joinWards(
      [
        { ward_name: '  lone ', ward_code: null, line: 2 },
        { ward_name: 'Kawo', ward_code: null, line: 3 },
      ],
      features,
      true,
    );
    expect(report.join_on).toBe('ward_name');
    expect(report.matched).toBe(2);
    expect(report.ambiguous).toEqual(['kawo']);
  });
});

describe('upload with a shapefile, through the real server', () => {
  let app: RunningApp;
  beforeAll(async () => {
    app = await startApp(await buildRelease());
  });
  afterAll(async () => {
    await app?.stop();
  });

  it('joins all 275 Niger wards on WardCode and maps them by risk category after analysis', async () => {
    const res = await upload(app.url, nigerCsv, {
      path: '/upload_both_files',
      field: 'csv_file',
      filename: 'Niger_plus.csv',
      files: { shapefile: { name: 'Niger_State.zip', content: nigerZip } },
    });
    const body = (await res.json()) as { status: string; shapefile: { feature_count: number; join_on: string; matched: number; unmatched_csv: unknown[] } };
    expect(res.status).toBe(200);
    expect(body.shapefile).toMatchObject({ feature_count: 275, join_on: 'ward_code', matched: 275, unmatched_csv: [] });
    const cookie = sessionCookieOf(res)!;
    const before = (await (await fetch(`${app.url}/api/map`, { headers: { cookie } })).json()) as { features: { properties: { category: string | null } }[] };
    expect(before.features).toHaveLength(275);
    expect(before.features.every((f) => f.properties.category === null)).toBe(true);
    expect((await fetch(`${app.url}/api/analysis`, { method: 'POST', headers: { cookie } })).status).toBe(200);
    const map = (await (await fetch(`${app.url}/api/map`, { headers: { cookie } })).json()) as {
      features: { properties: { category: string | null; rank: number | null } }[];
    };
    const counts = { high: 0, medium: 0, low: 0 } as Record<string, number>;
    for (const f of map.features) counts[f.properties.category!]! += 1;
    expect(counts).toEqual({ high: 92, medium: 92, low: 91 });
    expect(new Set(map.features.map((f) => f.properties.rank)).size).toBe(275);
  });

  it('reports CSV wards that match no polygon', async () => {
    const text = Buffer.from(nigerCsv).toString('utf8').replace(',NISAGR01,', ',NOSUCH01,');
    const res = await upload(app.url, text, { files: { shapefile: { name: 'Niger_State.zip', content: nigerZip } } });
    const body = (await res.json()) as { shapefile: { matched: number; unmatched_csv: { ward_code: string; line: number }[]; unmatched_features: { ward_code: string }[] } };
    expect(body.shapefile.matched).toBe(274);
    expect(body.shapefile.unmatched_csv).toEqual([expect.objectContaining({ ward_code: 'NOSUCH01', line: 2 })]);
    expect(body.shapefile.unmatched_features).toEqual([expect.objectContaining({ ward_code: 'NISAGR01' })]);
  });

  it('refuses a CSV uploaded with another state\'s shapefile (no ward in common), saying so, and stores nothing', async () => {
    // The synthetic state of app/sample-data (codes SS…, no name shared with Niger) with the real Niger boundaries.
    const otherState = readFileSync(join(repoRoot, 'app', 'sample-data', 'sample_wards.csv'));
    const before = await readdir(join(app.dataDir, 'sessions'));
    const res = await upload(app.url, new Uint8Array(otherState), {
      filename: 'sample_wards.csv',
      files: { shapefile: { name: 'Niger_State.zip', content: nigerZip } },
    });
    const body = (await res.json()) as { code: string; message: string; file: string };
    expect(res.status).toBe(422);
    expect(body).toMatchObject({ code: 'NO_WARDS_MATCHED', file: 'Niger_State.zip' });
    expect(body.message).toMatch(/^sample_wards\.csv and Niger_State\.zip have no ward in common: none of the 60 wards .* 275 polygons by ward code/);
    expect(sessionCookieOf(res)).toBeNull();
    expect(await readdir(join(app.dataDir, 'sessions'))).toEqual(before);
  });

  it('accepts a partial match with a warning that counts and names the unmatched wards (bounded lists)', async () => {
    // 60 real Niger wards get codes the boundaries do not have.
    let n = 0;
    const text = Buffer.from(nigerCsv)
      .toString('utf8')
      .replace(/,(NIS[A-Z]{3}\d\d),/g, (m, code: string) => (n++ < 60 ? `,XX${code.slice(2)},` : m));
    expect(n).toBe(275);
    const res = await upload(app.url, text, { filename: 'Niger_plus.csv', files: { shapefile: { name: 'Niger_State.zip', content: nigerZip } } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      warnings: string[];
      shapefile: { matched: number; unmatched_csv: { line: number }[]; unmatched_csv_count: number; unmatched_features: unknown[]; unmatched_features_count: number };
    };
    expect(body.shapefile).toMatchObject({ matched: 215, unmatched_csv_count: 60, unmatched_features_count: 60 });
    expect(body.shapefile.unmatched_csv).toHaveLength(50);
    expect(body.shapefile.unmatched_features).toHaveLength(50);
    const warning = body.warnings.find((w) => w.includes('have no polygon'))!;
    expect(warning).toMatch(/^60 of 275 wards have no polygon in Niger_State\.zip \(joined on ward code\) and are not on the map: Adahe \(XXSAGR01\) line 2, /);
    expect(warning).toMatch(/ and 50 more$/);
    expect(body.warnings).toContain('60 of 275 polygons in Niger_State.zip have no ward in Niger_plus.csv (shown grey)');
  });

  it('a bad shapefile fails the whole upload and leaves no session behind', async () => {
    const before = await readdir(join(app.dataDir, 'sessions'));
    const res = await upload(app.url, nigerCsv, { files: { shapefile: { name: 'broken.zip', content: new Uint8Array([1, 2, 3]) } } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ status: 'error', code: 'NOT_ZIP', file: 'broken.zip' });
    expect(sessionCookieOf(res)).toBeNull();
    expect(await readdir(join(app.dataDir, 'sessions'))).toEqual(before);
  });

  it('an unsafe or oversized zip fails the upload with a 4xx and leaves no session', async () => {
    const small = await startApp(await buildRelease(), { ZIP_MAX_BYTES: '1000000' });
    try {
      const padded = await zipEntries([
        { name: 'pad.bin', data: Buffer.alloc(2_000_000) },
        { name: 'w.zip', data: await writeShapefileZip('w', FIELDS, twoWards()) },
      ]);
      const placeholder = 'xx/evil.shp';
      const unsafe = Buffer.from((await zipEntries([{ name: placeholder, data: Buffer.from('x') }])).toString('latin1').split(placeholder).join('../evil.shp'), 'latin1');
      const csv = 'WardName,WardCode,pfpr\nAlpha,W1,0.1\nBeta,W2,0.2\n';
      for (const [zip, status, code] of [
        [padded, 413, 'ZIP_TOO_LARGE'],
        [unsafe, 400, 'ZIP_UNSAFE_PATH'],
      ] as const) {
        const res = await upload(small.url, csv, { files: { shapefile: { name: 'w.zip', content: new Uint8Array(zip) } } });
        expect(res.status).toBe(status);
        expect(await res.json()).toMatchObject({ status: 'error', code });
        expect(sessionCookieOf(res)).toBeNull();
      }
      expect((await readdir(join(small.dataDir, 'sessions'))).filter((n) => n !== '.tmp')).toEqual([]);
      // The same CSV with a good zip is accepted by that server.
      const ok = await upload(small.url, csv, { files: { shapefile: { name: 'w.zip', content: new Uint8Array(await writeShapefileZip('w', FIELDS, twoWards())) } } });
      expect(ok.status).toBe(200);
    } finally {
      await small.stop();
    }
  });

  it('/api/map is 404 for a session without boundaries and 401 without a session', async () => {
    const res = await upload(app.url, 'WardName,pfpr\nA,0.1\nB,0.2\n');
    expect((await fetch(`${app.url}/api/map`, { headers: { cookie: sessionCookieOf(res)! } })).status).toBe(404);
    expect((await fetch(`${app.url}/api/map`)).status).toBe(401);
  });
});
