/** POST /api/analysis and the CSV export, through the real built server, on the real Niger data. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, realDataDir, sessionCookieOf, startApp, upload, type RunningApp } from './support.ts';

let app: RunningApp;
let cookie: string;
const nigerCsv = readFileSync(join(realDataDir, 'Niger_plus.csv'));

beforeAll(async () => {
  app = await startApp(await buildRelease());
  const res = await upload(app.url, new Uint8Array(nigerCsv), { filename: 'Niger_plus.csv' });
  expect(res.status).toBe(200);
  cookie = sessionCookieOf(res)!;
});
afterAll(async () => {
  await app?.stop();
});

function analyse(body: unknown, c: string | null = cookie) {
  return fetch(`${app.url}/api/analysis`, {
    method: 'POST',
    headers: { ...(c ? { cookie: c } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

interface Ward {
  rank: number;
  ward_name: string;
  ward_code: string;
  category: string;
  score: number;
  imputed: string[];
}

describe('composite analysis of Niger State', () => {
  it('ranks all 275 wards with default indicators, shows the defaults and imputations', async () => {
    const res = await analyse(undefined);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      method: string;
      indicators: { column: string; direction: string; source: string; missing: number; imputed_with: number | null }[];
      categories: Record<string, number>;
      wards: Ward[];
      formula: string;
    };
    expect(body.method).toBe('composite');
    expect(body.formula).toMatch(/min-max/);
    expect(body.wards).toHaveLength(275);
    expect(body.wards.map((w) => w.rank)).toEqual(Array.from({ length: 275 }, (_, i) => i + 1));
    expect(body.categories).toEqual({ high: 92, medium: 92, low: 91 });
    const ind = Object.fromEntries(body.indicators.map((i) => [i.column, i]));
    expect(ind.distance_to_water).toMatchObject({ direction: 'negative', source: 'default' });
    expect(ind.housing_quality).toMatchObject({ direction: 'negative', missing: 17 });
    expect(ind.housing_quality!.imputed_with).toEqual(expect.any(Number));
    expect(ind.pfpr).toMatchObject({ direction: 'positive' });
    expect(ind.population).toBeUndefined();
    expect(ind['X.1']).toBeUndefined();
    expect(body.wards.filter((w) => w.imputed.includes('housing_quality'))).toHaveLength(17);
    for (let i = 1; i < body.wards.length; i++) expect(body.wards[i - 1]!.score).toBeGreaterThanOrEqual(body.wards[i]!.score);
    // Duplicate names are distinct wards: every ward code appears once.
    expect(new Set(body.wards.map((w) => w.ward_code)).size).toBe(275);
  });

  it('uses the chosen indicators and directions', async () => {
    const res = await analyse({ indicators: [{ column: 'pfpr', direction: 'positive' }] });
    const body = (await res.json()) as { wards: Ward[]; indicators: { column: string }[] };
    expect(body.indicators.map((i) => i.column)).toEqual(['pfpr']);
    // With one positive indicator the top ward is the one with the highest pfpr.
    const table = parse(nigerCsv, { columns: true, bom: true }) as Record<string, string>[];
    const top = table.filter((r) => r.pfpr !== 'NA').sort((a, b) => Number(b.pfpr) - Number(a.pfpr))[0]!;
    expect(body.wards[0]!.ward_code).toBe(top.WardCode);
    expect(body.wards[0]!.score).toBe(1);
  });

  it('exports the ranked table as CSV that reads back with every ward', async () => {
    await analyse(undefined);
    const res = await fetch(`${app.url}/api/analysis/export.csv`, { headers: { cookie } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(res.headers.get('content-disposition')).toMatch(/attachment; filename="ward-risk-composite\.csv"/);
    const rows = parse(await res.text(), { columns: true, bom: true }) as Record<string, string>[];
    expect(rows).toHaveLength(275);
    expect(rows[0]!.rank).toBe('1');
    const codes = new Set((parse(nigerCsv, { columns: true, bom: true }) as Record<string, string>[]).map((r) => r.WardCode));
    expect(new Set(rows.map((r) => r.ward_code))).toEqual(codes);
  });
});

describe('PCA analysis of Niger State', () => {
  it('reports suitability, explained variance and loadings, and ranks every ward', async () => {
    const res = await analyse({ method: 'pca' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      method: string;
      pca: { explained_variance: number; suitability: { kmo: number; bartlett: { chi2: number; df: number; p_value: number }; suitable: boolean } };
      indicators: { loading?: number }[];
      wards: Ward[];
    };
    expect(body.method).toBe('pca');
    expect(body.pca.explained_variance).toBeGreaterThan(0);
    expect(body.pca.explained_variance).toBeLessThan(1);
    expect(body.pca.suitability.kmo).toBeGreaterThanOrEqual(0);
    expect(body.pca.suitability.kmo).toBeLessThanOrEqual(1);
    const k = body.indicators.length;
    expect(body.pca.suitability.bartlett.df).toBe((k * (k - 1)) / 2);
    expect(body.indicators.every((i) => typeof i.loading === 'number')).toBe(true);
    // Niger's covariates are strongly inter-correlated: KMO about 0.71, Bartlett p far below 0.05.
    expect(body.pca.suitability.suitable).toBe(true);
    expect(body.wards).toHaveLength(275);
    expect(body.wards[0]!.score).toBe(1);
  });
});

/**
 * The real Niger table with columns renamed (`rename`: old -> new) and dropped, written back as
 * CSV (every cell quoted; NA stays NA), as a state file that names its columns differently would be.
 */
function nigerVariant(rename: Record<string, string>, drop: string[] = [], keep?: string[]): string {
  const rows = parse(nigerCsv, { bom: true }) as string[][];
  const header = rows[0]!;
  const idx = header.map((_, i) => i).filter((i) => !drop.includes(header[i]!) && (!keep || keep.includes(header[i]!)));
  const q = (v: string) => `"${v.replace(/"/g, '""')}"`;
  return rows.map((r, n) => idx.map((i) => q(n === 0 ? (rename[r[i]!] ?? r[i]!) : r[i]!)).join(',')).join('\n') + '\n';
}

async function uploadText(csv: string): Promise<string> {
  const res = await upload(app.url, csv, { filename: 'Niger_variant.csv' });
  expect(res.status, await res.clone().text()).toBe(200);
  return sessionCookieOf(res)!;
}

interface Variables {
  indicators: { column: string; direction: string; source: string; variable: { id: string; kind: string; synonym: string; rule_source: string } | null }[];
  variables: { burden_measure_found: boolean; burden_measures: string[]; not_used: { column: string; reason: string }[] };
  warnings: string[];
}

describe('variables recognised in real files (the synonym table)', () => {
  it('finds the under-5 test positivity rate of a state file that calls it "tpr_u5", and says which synonym matched', async () => {
    const c = await uploadText(nigerVariant({ u5_tpr_rdt: 'tpr_u5' }, ['pfpr']));
    const res = await analyse(undefined, c);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Variables;
    const tpr = body.indicators.find((i) => i.column === 'tpr_u5');
    expect(tpr).toMatchObject({ direction: 'positive', source: 'default', variable: { id: 'u5_tpr', kind: 'burden', synonym: 'u5_tpr' } });
    expect(tpr!.variable!.rule_source).toMatch(/^WHO/);
    expect(body.variables).toMatchObject({ burden_measure_found: true, burden_measures: ['tpr_u5'] });
    expect(body.variables.not_used).toContainEqual({ column: 'population', reason: expect.stringMatching(/size measure/) });
    expect(body.warnings.join(' ')).not.toMatch(/NOT a malaria risk ranking/);
  });

  it('refuses to rank a real file whose only numeric column is population (422 NO_KNOWN_INDICATORS)', async () => {
    const c = await uploadText(nigerVariant({}, [], ['WardName', 'WardCode', 'population']));
    const res = await analyse(undefined, c);
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ code: 'NO_KNOWN_INDICATORS', message: expect.stringContaining('numeric columns: population') });
  });

  it('warns that a ranking of the real file without its burden measures is not a malaria risk ranking', async () => {
    const c = await uploadText(nigerVariant({}, ['pfpr', 'u5_tpr_rdt']));
    const res = await analyse(undefined, c);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Variables;
    expect(body.variables).toMatchObject({ burden_measure_found: false, burden_measures: [] });
    expect(body.warnings[0]).toMatch(/No malaria burden measure.*It is NOT a malaria risk ranking/);
    expect(body.indicators.length).toBeGreaterThan(5);
  });
});

describe('analysis routes are per session', () => {
  it('need a session cookie', async () => {
    expect((await analyse(undefined, null)).status).toBe(401);
    expect((await fetch(`${app.url}/api/analysis/export.csv`)).status).toBe(401);
    expect((await analyse(undefined, 'analysis_session=9b2e0a52-6c1f-4f57-9d43-0f3f6b2d9c11')).status).toBe(401);
  });

  it('export before any analysis is 404, and shows only the own session', async () => {
    const other = await upload(app.url, 'WardName,pfpr\nOTHER-WARD,0.5\nSECOND,0.2\n');
    const otherCookie = sessionCookieOf(other)!;
    expect((await fetch(`${app.url}/api/analysis/export.csv`, { headers: { cookie: otherCookie } })).status).toBe(404);
    expect((await analyse(undefined, otherCookie)).status).toBe(200);
    const mine = await (await fetch(`${app.url}/api/analysis/export.csv`, { headers: { cookie } })).text();
    const theirs = await (await fetch(`${app.url}/api/analysis/export.csv`, { headers: { cookie: otherCookie } })).text();
    expect(theirs).toContain('OTHER-WARD');
    expect(mine).not.toContain('OTHER-WARD');
  });

  it.each([
    [{ method: 'magic' }, 400, 'BAD_METHOD'],
    [{ indicators: [] }, 400, 'BAD_INDICATORS'],
    [{ indicators: [{ column: 'nope', direction: 'positive' }] }, 400, 'UNKNOWN_COLUMN'],
    [{ indicators: [{ column: 'WardName' }] }, 400, 'NOT_NUMERIC'],
    [{ indicators: [{ column: 'pfpr', direction: 'sideways' }] }, 400, 'BAD_INDICATORS'],
    [[1, 2], 400, 'BAD_REQUEST'],
  ])('refuses %j with %i %s', async (body, status, code) => {
    const res = await analyse(body);
    expect(res.status).toBe(status);
    expect(await res.json()).toMatchObject({ status: 'error', code });
  });

  it('refuses a body that is not JSON', async () => {
    const res = await fetch(`${app.url}/api/analysis`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: '{' });
    expect(res.status).toBe(400);
  });
});
