/**
 * The optional ward boundaries: a zipped ESRI shapefile, read with the `shapefile` package
 * (.shp geometry + .dbf attributes), reprojected to WGS84 longitude/latitude with proj4 when the
 * .prj says the coordinates are projected, and joined to the CSV wards.
 *
 * Join rule: on the ward code when both the CSV and the shapefile have one (ward names repeat:
 * Niger State has five names used twice), otherwise on the ward name compared case- and
 * space-insensitively.
 */
import * as shapefile from 'shapefile';
import proj4 from 'proj4';
import type { Feature, FeatureCollection, Geometry, Position } from 'geojson';
import { AppError } from './errors.ts';
import { normalizeName } from './table.ts';
import { readZip } from './zip.ts';

/** Coordinates kept to 6 decimals of a degree (about 0.1 m): enough for a ward map, half the size. */
const DECIMALS = 1e6;

const NAME_FIELDS = ['wardname', 'ward', 'wardnm', 'name', 'wardname1'];
const CODE_FIELDS = ['wardcode', 'wardid', 'wardcd'];

export interface BoundaryFeature extends Feature<Geometry, { ward_name: string | null; ward_code: string | null }> {}

export interface ShapefileSummary {
  file: string;
  /** Base name of the .shp inside the zip. */
  layer: string;
  feature_count: number;
  /** Attribute holding ward names / codes (null when none was recognised). */
  name_field: string | null;
  code_field: string | null;
  fields: string[];
  /** What the .prj said, and whether coordinates were reprojected to WGS84. */
  crs: { prj: string | null; geographic: boolean; reprojected: boolean };
  /** [minLon, minLat, maxLon, maxLat] after reprojection. */
  bbox: [number, number, number, number];
}

export interface JoinReport {
  join_on: 'ward_code' | 'ward_name';
  matched: number;
  /** CSV wards without a polygon: name, code and file line (the first MAX_LISTED; the count is `unmatched_csv_count`). */
  unmatched_csv: { ward_name: string; ward_code: string | null; line: number }[];
  unmatched_csv_count: number;
  /** Polygons without a CSV ward (the first MAX_LISTED; the count is `unmatched_features_count`). */
  unmatched_features: { ward_name: string | null; ward_code: string | null }[];
  unmatched_features_count: number;
  /** Join keys held by more than one CSV ward or polygon: the map cannot tell those apart. */
  ambiguous: string[];
}

function pickField(fields: string[], wanted: string[]): string | null {
  const norm = fields.map(normalizeName);
  for (const w of wanted) {
    const i = norm.indexOf(w);
    if (i >= 0) return fields[i]!;
  }
  return null;
}

function roundPosition(p: Position): Position {
  return [Math.round(p[0]! * DECIMALS) / DECIMALS, Math.round(p[1]! * DECIMALS) / DECIMALS];
}

function mapGeometry(g: Geometry, f: (p: Position) => Position): Geometry {
  switch (g.type) {
    case 'Point':
      return { type: 'Point', coordinates: f(g.coordinates) };
    case 'MultiPoint':
    case 'LineString':
      return { type: g.type, coordinates: g.coordinates.map(f) } as Geometry;
    case 'MultiLineString':
    case 'Polygon':
      return { type: g.type, coordinates: g.coordinates.map((ring) => ring.map(f)) } as Geometry;
    case 'MultiPolygon':
      return { type: 'MultiPolygon', coordinates: g.coordinates.map((poly) => poly.map((ring) => ring.map(f))) };
    case 'GeometryCollection':
      return { type: 'GeometryCollection', geometries: g.geometries.map((x) => mapGeometry(x, f)) };
  }
}

function isGeographic(prj: string): boolean {
  return /^\s*GEOGCS\[/i.test(prj) || /^\s*GEOGCRS\[/i.test(prj);
}

/**
 * Read a zipped shapefile into WGS84 GeoJSON features.
 * @param buf zip bytes. @param file uploaded name. @param zipMaxBytes uncompressed size limit, bytes.
 * @throws AppError 4xx: zip errors (see readZip); 422 SHAPEFILE_MISSING_PARTS when .shp or .dbf
 *   is absent, SHAPEFILE_AMBIGUOUS with several .shp, SHAPEFILE_INVALID when it cannot be parsed,
 *   SHAPEFILE_BAD_PRJ for a .prj proj4 cannot read, SHAPEFILE_NO_PRJ for projected coordinates
 *   without a .prj, SHAPEFILE_EMPTY with no features.
 */
export async function readShapefileZip(
  buf: Buffer,
  file: string,
  zipMaxBytes: number,
): Promise<{ summary: ShapefileSummary; features: BoundaryFeature[] }> {
  const { files } = await readZip(buf, file, zipMaxBytes);
  // macOS Finder adds resource forks under __MACOSX/: never shapefile parts.
  const names = [...files.keys()].filter((n) => !n.startsWith('__MACOSX/') && !n.split('/').pop()!.startsWith('._'));
  const shps = names.filter((n) => /\.shp$/i.test(n));
  if (shps.length > 1) {
    throw new AppError(422, 'SHAPEFILE_AMBIGUOUS', `${file} holds ${shps.length} shapefiles (${shps.join(', ')}); upload one`, { file });
  }
  const base = shps[0]?.replace(/\.shp$/i, '') ?? names.find((n) => /\.dbf$/i.test(n))?.replace(/\.dbf$/i, '') ?? '';
  const part = (ext: string) => {
    const found = names.find((n) => n.toLowerCase() === `${base}.${ext}`.toLowerCase());
    return found ? files.get(found)! : null;
  };
  const shp = shps[0] ? files.get(shps[0])! : null;
  const dbf = part('dbf');
  const missing = [!shp && '.shp', !dbf && '.dbf'].filter(Boolean);
  if (missing.length > 0) {
    throw new AppError(422, 'SHAPEFILE_MISSING_PARTS', `${file} has no ${missing.join(' and no ')} file; a shapefile zip needs .shp and .dbf (and .prj)`, {
      file,
    });
  }
  const prj = part('prj')?.toString('utf8').trim() || null;
  const cpg = part('cpg')?.toString('utf8').trim() || undefined;

  let collection: FeatureCollection;
  try {
    collection = await shapefile.read(new Uint8Array(shp!), new Uint8Array(dbf!), cpg ? { encoding: cpg } : {});
  } catch (e) {
    throw new AppError(422, 'SHAPEFILE_INVALID', `${file}: the shapefile cannot be read (${(e as Error).message})`, { file });
  }
  const raw = collection.features.filter((f) => f.geometry);
  if (raw.length === 0) throw new AppError(422, 'SHAPEFILE_EMPTY', `${file}: the shapefile has no features with a geometry`, { file });

  let project: ((p: Position) => Position) | null = null;
  const geographic = prj ? isGeographic(prj) : true;
  if (prj && !geographic) {
    try {
      const converter = proj4(prj, 'EPSG:4326');
      project = (p) => converter.forward([p[0]!, p[1]!]);
    } catch (e) {
      throw new AppError(422, 'SHAPEFILE_BAD_PRJ', `${file}: the .prj cannot be read (${(e as Error).message})`, { file });
    }
  }
  const fields = Object.keys(raw[0]!.properties ?? {});
  const nameField = pickField(fields, NAME_FIELDS);
  const codeField = pickField(fields, CODE_FIELDS);
  const bbox: [number, number, number, number] = [Infinity, Infinity, -Infinity, -Infinity];
  const features: BoundaryFeature[] = raw.map((f) => {
    const geometry = mapGeometry(f.geometry, (p) => {
      const q = roundPosition(project ? project(p) : p);
      if (q[0]! < bbox[0]) bbox[0] = q[0]!;
      if (q[1]! < bbox[1]) bbox[1] = q[1]!;
      if (q[0]! > bbox[2]) bbox[2] = q[0]!;
      if (q[1]! > bbox[3]) bbox[3] = q[1]!;
      return q;
    });
    const props = f.properties ?? {};
    const text = (field: string | null) => (field && props[field] != null ? String(props[field]).trim() : null);
    return { type: 'Feature', geometry, properties: { ward_name: text(nameField), ward_code: text(codeField) } };
  });
  if (!prj && (bbox[0] < -180 || bbox[2] > 180 || bbox[1] < -90 || bbox[3] > 90)) {
    throw new AppError(
      422,
      'SHAPEFILE_NO_PRJ',
      `${file}: coordinates are projected (outside longitude/latitude range) and there is no .prj saying how; include the .prj`,
      { file },
    );
  }
  return {
    summary: {
      file,
      layer: base.split('/').pop() ?? base,
      feature_count: features.length,
      name_field: nameField,
      code_field: codeField,
      fields,
      crs: { prj, geographic, reprojected: project !== null },
      bbox,
    },
    features,
  };
}

/** Unmatched wards listed in an upload answer (each side); the counts are always complete. */
export const MAX_LISTED = 50;
/** Unmatched wards named in the warning text. */
const WARNING_NAMES = 10;

/** The key a ward joins on: its code when joining on codes, else its normalised name. */
export function joinKey(on: JoinReport['join_on'], name: string | null, code: string | null): string | null {
  if (on === 'ward_code') return code ? code.trim().toUpperCase() : null;
  return name ? name.trim().toLowerCase().replace(/\s+/g, ' ') : null;
}

/**
 * Match CSV wards to polygons.
 * @param wards CSV wards (name, code or null, file line). @param features boundaries.
 * @returns which key was used, the match count and both lists of unmatched wards.
 */
export function joinWards(
  wards: { ward_name: string; ward_code: string | null; line: number }[],
  features: BoundaryFeature[],
  codeFieldKnown: boolean,
): JoinReport {
  const csvHasCodes = wards.some((w) => w.ward_code);
  const on: JoinReport['join_on'] = csvHasCodes && codeFieldKnown ? 'ward_code' : 'ward_name';
  const featureKeys = new Set(features.map((f) => joinKey(on, f.properties.ward_name, f.properties.ward_code)));
  const csvKeys = new Set(wards.map((w) => joinKey(on, w.ward_name, w.ward_code)));
  const unmatchedCsv = wards.filter((w) => {
    const k = joinKey(on, w.ward_name, w.ward_code);
    return k === null || !featureKeys.has(k);
  });
  const unmatchedFeatures = features
    .filter((f) => {
      const k = joinKey(on, f.properties.ward_name, f.properties.ward_code);
      return k === null || !csvKeys.has(k);
    })
    .map((f) => ({ ward_name: f.properties.ward_name, ward_code: f.properties.ward_code }));
  const repeated = (keys: (string | null)[]) => {
    const seen = new Set<string>();
    const twice = new Set<string>();
    for (const k of keys) if (k !== null) (seen.has(k) ? twice : seen).add(k);
    return twice;
  };
  const ambiguous = new Set([
    ...repeated(wards.map((w) => joinKey(on, w.ward_name, w.ward_code))),
    ...repeated(features.map((f) => joinKey(on, f.properties.ward_name, f.properties.ward_code))),
  ]);
  return {
    join_on: on,
    matched: wards.length - unmatchedCsv.length,
    unmatched_csv: unmatchedCsv.slice(0, MAX_LISTED),
    unmatched_csv_count: unmatchedCsv.length,
    unmatched_features: unmatchedFeatures.slice(0, MAX_LISTED),
    unmatched_features_count: unmatchedFeatures.length,
    ambiguous: [...ambiguous].sort(),
  };
}

/**
 * Join the CSV wards to the polygons and judge the result: a pair with no ward in common is an
 * error (the files are of different states, or their keys differ), a partial match is a warning
 * that names the first unmatched wards and gives the counts. When a code join matches nothing
 * but names do, the name join is used and a warning says so.
 * @param files the CSV and zip names, for the messages.
 * @returns the join report and the warnings for the upload answer.
 * @throws AppError 422 NO_WARDS_MATCHED naming both files, the key and an example key of each side.
 */
export function joinAndCheck(
  wards: { ward_name: string; ward_code: string | null; line: number }[],
  features: BoundaryFeature[],
  codeFieldKnown: boolean,
  files: { csv: string; shapefile: string },
): { join: JoinReport; warnings: string[] } {
  let join = joinWards(wards, features, codeFieldKnown);
  const warnings: string[] = [];
  if (join.matched === 0 && join.join_on === 'ward_code') {
    const byName = joinWards(wards, features, false);
    if (byName.matched > 0) {
      join = byName;
      warnings.push(`no ward code of ${files.csv} is in ${files.shapefile}: the wards were joined on their names instead`);
    }
  }
  const key = join.join_on === 'ward_code' ? 'ward code' : 'ward name';
  if (join.matched === 0) {
    const csvExample = wards.find((w) => (join.join_on === 'ward_code' ? w.ward_code : w.ward_name));
    const shpExample = features.find((f) => (join.join_on === 'ward_code' ? f.properties.ward_code : f.properties.ward_name));
    const ex = (v: string | null | undefined) => (v ? `"${v}"` : 'none');
    throw new AppError(
      422,
      'NO_WARDS_MATCHED',
      `${files.csv} and ${files.shapefile} have no ward in common: none of the ${wards.length} wards of the CSV matches any of the ` +
        `${features.length} polygons by ${key} (e.g. CSV ${ex(join.join_on === 'ward_code' ? csvExample?.ward_code : csvExample?.ward_name)}, ` +
        `shapefile ${ex(join.join_on === 'ward_code' ? shpExample?.properties.ward_code : shpExample?.properties.ward_name)}). ` +
        'Are they the same state? Upload the boundaries of the state in the CSV, or the CSV alone',
      { file: files.shapefile },
    );
  }
  if (join.unmatched_csv_count > 0) {
    const names = join.unmatched_csv.slice(0, WARNING_NAMES).map((w) => `${w.ward_name}${w.ward_code ? ` (${w.ward_code})` : ''} line ${w.line}`);
    const more = join.unmatched_csv_count - names.length;
    warnings.push(
      `${join.unmatched_csv_count} of ${wards.length} wards have no polygon in ${files.shapefile} (joined on ${key}) and are not on the map: ` +
        `${names.join(', ')}${more > 0 ? ` and ${more} more` : ''}`,
    );
  }
  if (join.unmatched_features_count > 0) {
    warnings.push(`${join.unmatched_features_count} of ${features.length} polygons in ${files.shapefile} have no ward in ${files.csv} (shown grey)`);
  }
  return { join, warnings };
}
