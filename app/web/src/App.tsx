import { useEffect, useState } from 'react';
import { ApiError, fetchSession, fetchVersion, uploadFiles, type SessionData, type VersionInfo } from './api.ts';

function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const where = [err.where.file, err.where.row ? `line ${err.where.row}` : '', err.where.column ? `column "${err.where.column}"` : '']
      .filter(Boolean)
      .join(', ');
    return where ? `${err.message} (${where})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

export function App() {
  const [session, setSession] = useState<SessionData | null>(null);
  const [version, setVersion] = useState<VersionInfo | null>(null);
  const [csv, setCsv] = useState<File | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    fetchVersion().then(setVersion, () => setVersion(null));
    // A reload keeps the session: the browser still holds the HttpOnly cookie.
    fetchSession().then(setSession, (err: unknown) => setError(describeError(err)));
  }, []);

  async function onSubmit(e: React.FormEvent) {
    e.preventDefault();
    if (!csv) return;
    setError(null);
    setProgress(0);
    try {
      await uploadFiles(csv, null, setProgress);
      setSession(await fetchSession());
    } catch (err) {
      setError(describeError(err));
    } finally {
      setProgress(null);
    }
  }

  return (
    <div className="page">
      <header>
        <h1>Ward malaria risk analysis</h1>
      </header>
      <main>
        <form className="upload" onSubmit={onSubmit}>
          <label>
            Ward table (CSV)
            <input type="file" accept=".csv,text/csv" data-testid="csv-input" onChange={(e) => setCsv(e.target.files?.[0] ?? null)} />
          </label>
          <button type="submit" disabled={!csv || progress !== null}>
            Upload
          </button>
          {progress !== null && <progress value={progress} max={1} />}
        </form>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        {session && <SessionView session={session} />}
      </main>
      <footer>
        Release <span data-testid="release">{version ? version.release : 'unknown'}</span>
        {version?.instance ? ` on ${version.instance}` : ''}
      </footer>
    </div>
  );
}

function SessionView({ session }: { session: SessionData }) {
  const wardIndex = session.header.indexOf(session.ward_column);
  return (
    <section data-testid="session">
      <h2>{session.file}</h2>
      <p data-testid="summary">
        {session.rows} wards, {session.columns} columns; ward names in "{session.ward_column}"
        {session.duplicate_ward_names.length > 0 && `; ${session.duplicate_ward_names.length} ward names occur more than once`}
      </p>
      <div className="table-wrap">
        <table data-testid="data-table">
          <thead>
            <tr>
              {session.header.map((h) => (
                <th key={h}>{h}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {session.data.slice(0, 200).map((row, r) => (
              <tr key={r}>
                {row.map((cell, c) => (
                  <td key={c} className={c === wardIndex ? 'ward' : cell === null ? 'missing' : undefined}>
                    {cell ?? 'NA'}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
