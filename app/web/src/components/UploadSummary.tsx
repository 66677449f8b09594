import type { SessionData } from '../api.ts';

/** What the server understood of the upload: counts, missing values, duplicates, the join. */
export function UploadSummary({ session }: { session: SessionData }) {
  const missing = Object.entries(session.missing_values);
  const shp = session.shapefile;
  return (
    <section className="card" data-testid="summary">
      <h2>{session.file}</h2>
      <p>
        <strong data-testid="ward-count">{session.rows}</strong> wards, {session.columns} columns; ward names in “{session.ward_column}”
        {session.ward_code_column ? `, codes in “${session.ward_code_column}”` : ''}.
      </p>
      {missing.length > 0 && (
        <p>
          Missing values (imputed with the column mean in the analysis):{' '}
          {missing.map(([col, n]) => `${col} ${n}`).join(', ')}.
        </p>
      )}
      {session.duplicate_ward_names.length > 0 && (
        <p>
          Ward names used more than once: {session.duplicate_ward_names.map((d) => `${d.name} (${d.count}×)`).join(', ')}
          {session.ward_code_column ? '; they are told apart by their codes.' : '.'}
        </p>
      )}
      {shp && (
        <p data-testid="shapefile-summary">
          Boundaries {shp.file}: {shp.feature_count} polygons{shp.crs.reprojected ? ' (reprojected to longitude/latitude)' : ''}; joined on{' '}
          {shp.join_on === 'ward_code' ? 'ward code' : 'ward name'}: {shp.matched} of {session.rows} wards matched
          {shp.ambiguous.length > 0 && `; the map cannot tell apart wards sharing the key ${shp.ambiguous.slice(0, 5).join(', ')}`}.
        </p>
      )}
      {(session.warnings ?? []).map((w) => (
        <p key={w} className="warning" data-testid="upload-warning">
          {w}
        </p>
      ))}
    </section>
  );
}
