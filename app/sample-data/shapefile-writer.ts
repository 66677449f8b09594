/**
 * A minimal writer of polygon shapefiles (.shp, .shx, .dbf, .prj) zipped with yazl, for the
 * sample-data generator and the tests. It follows the public "ESRI Shapefile Technical
 * Description" (ESRI, July 1998) and the dBASE III table layout; it writes only what the
 * generator needs: polygon records (shape type 5) and character/numeric attributes.
 */
import yazl from 'yazl';

/** One polygon: rings of [x, y] positions, first ring the outer boundary, each ring closed. */
export interface PolygonRecord {
  rings: [number, number][][];
  attributes: Record<string, string | number | null>;
}

export interface DbfField {
  name: string;
  type: 'C' | 'N';
  length: number;
  decimals?: number;
}

const SHAPE_POLYGON = 5;

function ringArea(ring: [number, number][]): number {
  let a = 0;
  for (let i = 0; i < ring.length - 1; i++) a += ring[i]![0] * ring[i + 1]![1] - ring[i + 1]![0] * ring[i]![1];
  return a / 2;
}

/** Outer rings clockwise, holes counter-clockwise: the shapefile convention. */
function orient(rings: [number, number][][]): [number, number][][] {
  return rings.map((ring, i) => {
    const clockwise = ringArea(ring) < 0;
    return (i === 0) === clockwise ? ring : [...ring].reverse();
  });
}

function header(fileLengthWords: number, bbox: number[]): Buffer {
  const h = Buffer.alloc(100);
  h.writeInt32BE(9994, 0);
  h.writeInt32BE(fileLengthWords, 24);
  h.writeInt32LE(1000, 28);
  h.writeInt32LE(SHAPE_POLYGON, 32);
  bbox.forEach((v, i) => h.writeDoubleLE(v, 36 + i * 8));
  return h;
}

function bboxOf(points: [number, number][]): [number, number, number, number] {
  const b: [number, number, number, number] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of points) {
    b[0] = Math.min(b[0], x);
    b[1] = Math.min(b[1], y);
    b[2] = Math.max(b[2], x);
    b[3] = Math.max(b[3], y);
  }
  return b;
}

/** Write the .shp and .shx of polygon records. */
export function writeShp(records: PolygonRecord[]): { shp: Buffer; shx: Buffer } {
  const contents = records.map((rec) => {
    const rings = orient(rec.rings);
    const points = rings.flat();
    const c = Buffer.alloc(44 + 4 * rings.length + 16 * points.length);
    c.writeInt32LE(SHAPE_POLYGON, 0);
    bboxOf(points).forEach((v, i) => c.writeDoubleLE(v, 4 + i * 8));
    c.writeInt32LE(rings.length, 36);
    c.writeInt32LE(points.length, 40);
    let start = 0;
    rings.forEach((ring, i) => {
      c.writeInt32LE(start, 44 + 4 * i);
      start += ring.length;
    });
    const base = 44 + 4 * rings.length;
    points.forEach(([x, y], i) => {
      c.writeDoubleLE(x, base + 16 * i);
      c.writeDoubleLE(y, base + 16 * i + 8);
    });
    return c;
  });
  const allBox = bboxOf(records.flatMap((r) => r.rings.flat()));
  const bbox = [...allBox, 0, 0, 0, 0];
  const shpLength = 100 + contents.reduce((a, c) => a + 8 + c.length, 0);
  const shpParts: Buffer[] = [header(shpLength / 2, bbox)];
  const shxParts: Buffer[] = [header((100 + 8 * records.length) / 2, bbox)];
  let offset = 100;
  contents.forEach((c, i) => {
    const rh = Buffer.alloc(8);
    rh.writeInt32BE(i + 1, 0);
    rh.writeInt32BE(c.length / 2, 4);
    shpParts.push(rh, c);
    const ix = Buffer.alloc(8);
    ix.writeInt32BE(offset / 2, 0);
    ix.writeInt32BE(c.length / 2, 4);
    shxParts.push(ix);
    offset += 8 + c.length;
  });
  return { shp: Buffer.concat(shpParts), shx: Buffer.concat(shxParts) };
}

/** Write a dBASE III table (ASCII/UTF-8 text; the date stamp is fixed so output is reproducible). */
export function writeDbf(fields: DbfField[], rows: Record<string, string | number | null>[]): Buffer {
  const headerLength = 32 + 32 * fields.length + 1;
  const recordLength = 1 + fields.reduce((a, f) => a + f.length, 0);
  const h = Buffer.alloc(headerLength);
  h.writeUInt8(0x03, 0);
  h.writeUInt8(124, 1); // 2024-01-01
  h.writeUInt8(1, 2);
  h.writeUInt8(1, 3);
  h.writeUInt32LE(rows.length, 4);
  h.writeUInt16LE(headerLength, 8);
  h.writeUInt16LE(recordLength, 10);
  fields.forEach((f, i) => {
    const at = 32 + 32 * i;
    h.write(f.name.slice(0, 10), at, 'ascii');
    h.write(f.type, at + 11, 'ascii');
    h.writeUInt8(f.length, at + 16);
    h.writeUInt8(f.decimals ?? 0, at + 17);
  });
  h.writeUInt8(0x0d, headerLength - 1);
  const body = Buffer.alloc(rows.length * recordLength + 1, 0x20);
  rows.forEach((row, r) => {
    let at = r * recordLength + 1;
    for (const f of fields) {
      const v = row[f.name];
      let text = v === null || v === undefined ? '' : f.type === 'N' && typeof v === 'number' ? v.toFixed(f.decimals ?? 0) : String(v);
      const bytes = Buffer.from(text, 'utf8');
      if (bytes.length > f.length) text = bytes.subarray(0, f.length).toString('utf8');
      const cell = Buffer.from(text, 'utf8');
      // Numbers right-aligned, text left-aligned, both space-padded.
      cell.copy(body, f.type === 'N' ? at + f.length - cell.length : at);
      at += f.length;
    }
  });
  body.writeUInt8(0x1a, body.length - 1);
  return Buffer.concat([h, body]);
}

/** WKT of WGS84 geographic coordinates, as ESRI writes it in a .prj. */
export const WGS84_PRJ =
  'GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]';

/** Zip entries with a fixed timestamp, so the same input gives the same bytes. */
export function zipEntries(entries: { name: string; data: Buffer }[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const mtime = new Date(Date.UTC(2024, 0, 1));
  for (const e of entries) zip.addBuffer(e.data, e.name, { mtime, mode: 0o100644 });
  zip.end();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c));
    zip.outputStream.on('error', reject);
    zip.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

/**
 * Build a zipped shapefile named `<layer>.{shp,shx,dbf,prj}`.
 * @param prj WKT of the coordinate system (null: no .prj).
 */
export async function writeShapefileZip(
  layer: string,
  fields: DbfField[],
  records: PolygonRecord[],
  prj: string | null = WGS84_PRJ,
): Promise<Buffer> {
  const { shp, shx } = writeShp(records);
  const dbf = writeDbf(
    fields,
    records.map((r) => r.attributes),
  );
  const entries = [
    { name: `${layer}.shp`, data: shp },
    { name: `${layer}.shx`, data: shx },
    { name: `${layer}.dbf`, data: dbf },
  ];
  if (prj) entries.push({ name: `${layer}.prj`, data: Buffer.from(prj, 'utf8') });
  return zipEntries(entries);
}
