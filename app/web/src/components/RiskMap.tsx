import { useMemo } from 'react';
import { geoMercator, geoPath } from 'd3-geo';
import type { Geometry, Position } from 'geojson';
import type { MapData, MapFeature } from '../api.ts';

const WIDTH = 640;
const HEIGHT = 520;

function signedArea(ring: Position[]): number {
  let a = 0;
  for (let i = 0; i < ring.length - 1; i++) a += ring[i]![0]! * ring[i + 1]![1]! - ring[i + 1]![0]! * ring[i]![1]!;
  return a / 2;
}

/**
 * d3-geo treats polygons on the sphere and wants exterior rings clockwise (the opposite of
 * RFC 7946); a ring the other way round would be drawn as the whole globe minus the ward.
 * Ward polygons are small, so the planar orientation decides.
 */
function rewindForD3(g: Geometry): Geometry {
  const fix = (rings: Position[][]) => rings.map((ring, i) => ((i === 0) === signedArea(ring) < 0 ? ring : [...ring].reverse()));
  if (g.type === 'Polygon') return { type: 'Polygon', coordinates: fix(g.coordinates) };
  if (g.type === 'MultiPolygon') return { type: 'MultiPolygon', coordinates: g.coordinates.map(fix) };
  return g;
}

/** Choropleth (SVG) of the wards by risk category. */
export function RiskMap({ map }: { map: MapData }) {
  const paths = useMemo(() => {
    const features = map.features.map((f) => ({ ...f, geometry: rewindForD3(f.geometry) }));
    const projection = geoMercator().fitSize([WIDTH, HEIGHT], { type: 'FeatureCollection', features });
    const path = geoPath(projection);
    return features.map((f: MapFeature) => ({ d: path(f) ?? '', p: f.properties }));
  }, [map]);
  return (
    <figure className="map">
      <svg data-testid="risk-map" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} width="100%" role="img" aria-label="Map of wards by risk category">
        {paths.map(({ d, p }, i) => (
          <path key={i} d={d} data-testid="ward-shape" data-category={p.category ?? 'none'} className={`ward-shape ${p.category ?? 'none'}`}>
            <title>{`${p.ward_name ?? '?'}${p.ward_code ? ` (${p.ward_code})` : ''}: ${p.category ? `${p.category} risk, rank ${p.rank}` : 'no data'}`}</title>
          </path>
        ))}
      </svg>
      <figcaption className="legend">
        <span className="swatch high" /> high <span className="swatch medium" /> medium <span className="swatch low" /> low{' '}
        <span className="swatch none" /> no data
      </figcaption>
    </figure>
  );
}
