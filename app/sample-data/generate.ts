/**
 * Seeded generator of the demo input: a ward table shaped like the real Niger State file
 * (R-style index columns, `NA` for missing values, a quoted JSON column with commas, a repeated
 * ward name told apart by its code) and the matching zipped ward shapefile (WGS84 polygons).
 * The wards are synthetic: a jittered grid over a made-up state; their indicators follow one
 * hidden, spatially smooth "risk" surface plus noise, so the analysis has a pattern to find.
 *
 * Usage: npx tsx app/sample-data/generate.ts [--out DIR] [--seed N] [--cols N] [--rows N]
 * Writes DIR/sample_wards.csv and DIR/sample_wards.zip (default DIR: this folder). The same
 * seed and sizes always give the same bytes.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'csv-stringify/sync';
import { writeShapefileZip, type PolygonRecord } from './shapefile-writer.ts';

/** mulberry32: a small, well-known 32-bit seeded PRNG; plenty for synthetic demo data. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SampleOptions {
  seed: number;
  cols: number;
  rows: number;
}

const PREFIXES = ['Kafin', 'Gidan', 'Tudun', 'Sabon', 'Unguwar', 'Rafin', 'Dutsen', 'Kurmin', 'Bakin', 'Gangaren'];
const SUFFIXES = ['Wada', 'Mallam', 'Dogo', 'Bawa', 'Sarki', 'Iya', 'Gabas', 'Yamma', 'Kudu', 'Fulani', 'Tsoho', 'Rimi'];
const LGAS = ['Arewa', 'Gabas', 'Kudu', 'Yamma', 'Tsakiya', 'Rafi'];

function uuidFrom(rand: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(rand() * 16).toString(16));
  hex[12] = '4';
  hex[16] = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  const h = hex.join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/**
 * Generate the sample ward table (CSV text) and shapefile zip (bytes).
 * @returns csv text (UTF-8, LF line ends) and the zip; wards = cols * rows.
 */
export async function generateSample(opts: SampleOptions): Promise<{ csv: string; zip: Buffer; wards: number }> {
  const rand = mulberry32(opts.seed);
  const noise = (scale: number) => (rand() - 0.5) * 2 * scale;
  const { cols, rows } = opts;
  const lon0 = 5.2;
  const lat0 = 9.0;
  const step = 0.12;
  // Shared, jittered grid vertices, so neighbouring wards share their edges exactly.
  const vertex: [number, number][][] = [];
  for (let i = 0; i <= cols; i++) {
    vertex.push([]);
    for (let j = 0; j <= rows; j++) {
      const border = i === 0 || j === 0 || i === cols || j === rows;
      vertex[i]!.push([round(lon0 + i * step + (border ? 0 : noise(step * 0.3)), 6), round(lat0 + j * step + (border ? 0 : noise(step * 0.3)), 6)]);
    }
  }
  const header = [
    'X.1', 'X', 'WardName', 'country_na', 'state_name', 'state_code', 'lga_name', 'lga_code', 'WardCode', 'global_id', 'source',
    'properties', 'population', 'mean_EVI', 'mean_NDVI', 'mean_rainfall', 'distance_to_water', 'RH_mean', 'temp_mean',
    'housing_quality', 'pfpr', 'avgRAD', 'flood', 'NDWI', 'NDMI', 'elevation', 'mean_soil_wetness', 'u5_tpr_rdt',
    'urbanPercentage', 'building_height',
  ];
  const table: (string | number)[][] = [header];
  const records: PolygonRecord[] = [];
  const usedNames = new Set<string>();
  let n = 0;
  for (let j = rows - 1; j >= 0; j--) {
    for (let i = 0; i < cols; i++) {
      n += 1;
      const lgaIndex = Math.min(LGAS.length - 1, Math.floor((i / cols) * 3) + (j < rows / 2 ? 3 : 0));
      const lga = LGAS[lgaIndex]!;
      const lgaCode = 99001 + lgaIndex;
      const code = `SS${lga.slice(0, 3).toUpperCase()}${String(n).padStart(2, '0')}`;
      let name = `${PREFIXES[Math.floor(rand() * PREFIXES.length)]} ${SUFFIXES[Math.floor(rand() * SUFFIXES.length)]}`;
      // Keep names unique except one deliberate repeat, as in the real file.
      while (usedNames.has(name) && n !== 7) {
        // Large tables (benchmarks) run out of name pairs: number them instead.
        if (usedNames.size >= PREFIXES.length * SUFFIXES.length) {
          name = `${name} ${n}`;
          break;
        }
        name = `${PREFIXES[Math.floor(rand() * PREFIXES.length)]} ${SUFFIXES[Math.floor(rand() * SUFFIXES.length)]}`;
      }
      if (n === 7) name = [...usedNames][0]!;
      usedNames.add(name);

      // Hidden risk: high along a "river" running south-west to north-east, low on the uplands.
      const x = (i + 0.5) / cols;
      const y = (j + 0.5) / rows;
      const river = Math.abs(y - (0.2 + 0.6 * x));
      const risk = Math.min(1, Math.max(0, 1 - river * 2.2 + noise(0.12)));
      const urban = rand() < 0.1;
      const row: (string | number)[] = [
        n,
        n + Math.floor(n / 9),
        name,
        'Nigeria',
        'Sample',
        'SS',
        lga,
        lgaCode,
        code,
        uuidFrom(rand),
        'synthetic',
        JSON.stringify({ lgacode: String(lgaCode), amapcode: `SSE SS ${lga.slice(0, 3).toUpperCase()}` }),
        Math.round(2000 + rand() * 60000 + (urban ? 80000 : 0)),
        round(1500 + risk * 1500 + noise(250), 6),
        round(2200 + risk * 2500 + noise(300), 6),
        round(85 + risk * 30 + noise(3), 6),
        round(Math.max(0, 7000 * (1 - risk) + noise(700)), 6),
        round(51 + risk * 11 + noise(1.5), 6),
        round(30.2 + risk * 1.0 + noise(0.15), 6),
        round(Math.min(0.75, Math.max(0.03, 0.62 - risk * 0.5 + (urban ? 0.15 : 0) + noise(0.06))), 6),
        round(0.16 + risk * 0.19 + noise(0.02), 6),
        round(Math.max(0.25, 0.4 + (urban ? 5 : 0) + noise(0.1)), 6),
        round(Math.max(0, Math.min(0.95, risk * 0.8 + noise(0.1))), 6),
        round(-0.45 + risk * 0.45 + noise(0.04), 6),
        round(-0.05 + risk * 0.3 + noise(0.03), 6),
        round(520 - risk * 420 + noise(30), 6),
        round(0.53 + risk * 0.2 + noise(0.02), 6),
        round(6 + risk * 38 + noise(4), 6),
        urban ? round(20 + rand() * 75, 6) : 0,
        round(Math.max(0.02, (urban ? 4 : 0.3) + noise(0.25)), 6),
      ];
      table.push(row);
      const v = (a: number, b: number) => vertex[a]![b]!;
      records.push({
        rings: [[v(i, j), v(i, j + 1), v(i + 1, j + 1), v(i + 1, j), v(i, j)]],
        attributes: { StateCode: 'SS', WardCode: code, WardName: name, LGACode: String(lgaCode), Urban: urban ? 'Yes' : 'No' },
      });
    }
  }
  // Missing values as R writes them, in the columns where the real file has them.
  const missing: [string, number][] = [
    ['housing_quality', 5],
    ['building_height', 2],
    ['NDMI', 1],
    ['pfpr', 1],
  ];
  for (const [column, count] of missing) {
    const c = header.indexOf(column);
    for (let k = 0; k < count; k++) table[1 + Math.floor(rand() * (table.length - 1))]![c] = 'NA';
  }
  const csv = stringify(table, { record_delimiter: '\n' });
  const zip = await writeShapefileZip(
    'sample_wards',
    [
      { name: 'StateCode', type: 'C', length: 2 },
      { name: 'WardCode', type: 'C', length: 12 },
      { name: 'WardName', type: 'C', length: 40 },
      { name: 'LGACode', type: 'C', length: 8 },
      { name: 'Urban', type: 'C', length: 3 },
    ],
    records,
  );
  return { csv, zip, wards: n };
}

/** The options the committed sample files were generated with. */
export const COMMITTED_SAMPLE: SampleOptions = { seed: 20261130, cols: 10, rows: 6 };

async function main(argv: string[]): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  let out = here;
  const opts = { ...COMMITTED_SAMPLE };
  for (let i = 0; i < argv.length; i++) {
    const next = argv[i + 1];
    if (argv[i] === '--out' && next) out = resolve(argv[++i]!);
    else if (argv[i] === '--seed' && next) opts.seed = Number(argv[++i]);
    else if (argv[i] === '--cols' && next) opts.cols = Number(argv[++i]);
    else if (argv[i] === '--rows' && next) opts.rows = Number(argv[++i]);
    else {
      console.error('usage: npx tsx app/sample-data/generate.ts [--out DIR] [--seed N] [--cols N] [--rows N]');
      process.exit(2);
    }
  }
  const { csv, zip, wards } = await generateSample(opts);
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'sample_wards.csv'), csv);
  await writeFile(join(out, 'sample_wards.zip'), zip);
  console.log(`wrote ${wards} wards to ${join(out, 'sample_wards.csv')} and ${join(out, 'sample_wards.zip')}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
