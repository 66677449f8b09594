import { useEffect, useRef, useState } from 'react';
import {
  ApiError,
  fetchAnalysis,
  fetchMap,
  fetchSession,
  fetchVersion,
  runAnalysis,
  signOut,
  uploadFiles,
  type AnalysisResult,
  type Direction,
  type MapData,
  type Method,
  type SessionData,
  type VersionInfo,
} from './api.ts';
import { UploadForm } from './components/UploadForm.tsx';
import { UploadSummary } from './components/UploadSummary.tsx';
import { AnalysisControls } from './components/AnalysisControls.tsx';
import { RankedTable } from './components/RankedTable.tsx';
import { TopWardsChart } from './components/TopWardsChart.tsx';
import { RiskMap } from './components/RiskMap.tsx';
import { IndicatorReport } from './components/IndicatorReport.tsx';

function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const where = [err.where.file, err.where.row ? `line ${err.where.row}` : '', err.where.column ? `column “${err.where.column}”` : '']
      .filter(Boolean)
      .join(', ');
    return where ? `${err.message} (${where})` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** A p-value as people read it: tiny values as an upper bound rather than "0.0". */
function formatP(p: number | null): string {
  if (p === null) return 'n/a';
  return p < 0.001 ? '< 0.001' : p.toPrecision(2);
}

/**
 * The whole page: upload, what was understood, indicator choice, results (table, chart, map,
 * download) and the running release. Session state lives in the server's cookie only.
 */
export function App() {
  const [session, setSession] = useState<SessionData | null>(null);
  const [analysis, setAnalysis] = useState<AnalysisResult | null>(null);
  const [map, setMap] = useState<MapData | null>(null);
  const [version, setVersion] = useState<VersionInfo | null>(null);
  const [progress, setProgress] = useState<number | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // Which dataset the view shows: bumped on every upload and sign-out. An answer that arrives
  // for an older generation is dropped, so one tab never shows two datasets at once.
  const generation = useRef(0);

  /** Forget everything shown (summary, ranking, chart, map) and start a new generation. */
  function clearView(): number {
    generation.current += 1;
    setSession(null);
    setAnalysis(null);
    setMap(null);
    return generation.current;
  }

  async function refreshResults(s: SessionData | null) {
    if (!s) return;
    const gen = generation.current;
    const a = await fetchAnalysis();
    const m = s.shapefile ? await fetchMap() : null;
    if (gen !== generation.current) return;
    setAnalysis(a);
    setMap(m);
  }

  useEffect(() => {
    fetchVersion().then(setVersion, () => setVersion(null));
    // A reload keeps the session: the browser still holds the HttpOnly cookie.
    const gen = generation.current;
    fetchSession()
      .then(async (s) => {
        if (gen !== generation.current) return;
        setSession(s);
        await refreshResults(s);
      })
      .catch((err: unknown) => {
        if (gen === generation.current) setError(describeError(err));
      });
  }, []);

  async function onUpload(csv: File, shapefile: File | null) {
    // The previous dataset's results go at once, before anything of the new one arrives; if a
    // later step fails, the view stays empty with the error.
    const gen = clearView();
    setError(null);
    setBusy(true);
    setProgress(0);
    try {
      await uploadFiles(csv, shapefile, setProgress);
      setProgress(null);
      const s = await fetchSession();
      if (gen !== generation.current) return;
      setSession(s);
      const a = await runAnalysis('composite');
      if (gen !== generation.current) return;
      setAnalysis(a);
      const m = s?.shapefile ? await fetchMap() : null;
      if (gen !== generation.current) return;
      setMap(m);
    } catch (err) {
      if (gen === generation.current) setError(describeError(err));
    } finally {
      setBusy(false);
      setProgress(null);
    }
  }

  async function onRun(method: Method, indicators: { column: string; direction: Direction }[]) {
    const gen = generation.current;
    setError(null);
    setBusy(true);
    try {
      const a = await runAnalysis(method, indicators);
      if (gen !== generation.current) return;
      setAnalysis(a);
      const m = session?.shapefile ? await fetchMap() : null;
      if (gen !== generation.current) return;
      if (session?.shapefile) setMap(m);
    } catch (err) {
      if (gen === generation.current) setError(describeError(err));
    } finally {
      setBusy(false);
    }
  }

  async function onSignOut() {
    clearView();
    setError(null);
    try {
      await signOut();
    } catch (err) {
      setError(`Sign-out failed: ${describeError(err)}`);
    }
  }

  return (
    <div className="page">
      <header>
        <h1>Ward malaria risk analysis</h1>
        {session && (
          <button type="button" className="sign-out" data-testid="sign-out" onClick={onSignOut} disabled={busy}>
            Sign out
          </button>
        )}
      </header>
      <main>
        <UploadForm busy={busy} progress={progress} onUpload={onUpload} />
        {error && (
          <p className="error" role="alert" data-testid="error">
            {error}
          </p>
        )}
        {session && <UploadSummary session={session} />}
        {session && <AnalysisControls columns={session.column_details} analysis={analysis} busy={busy} onRun={onRun} />}
        {analysis && (
          <section className="card results" data-testid="results">
            <h2>
              Ranked wards <small>({analysis.method === 'pca' ? 'PCA index' : 'composite score'})</small>
            </h2>
            <p className="formula">{analysis.formula}</p>
            <p data-testid="categories">
              High risk {analysis.categories.high}, medium {analysis.categories.medium}, low {analysis.categories.low}.
              {analysis.pca &&
                ` PC1 explains ${(analysis.pca.explained_variance * 100).toFixed(1)}% of the variance; KMO ${
                  analysis.pca.suitability.kmo?.toFixed(2) ?? 'n/a'
                }, Bartlett p ${formatP(analysis.pca.suitability.bartlett.p_value)}${analysis.pca.suitability.suitable ? '' : ' (not suited to PCA)'}.`}
            </p>
            {analysis.variables && !analysis.variables.burden_measure_found && (
              <p className="warning no-burden" role="alert" data-testid="no-burden-warning">
                Not a malaria risk ranking: no malaria burden measure (test positivity rate, parasite rate or incidence) was found among
                the indicators, so wards are ordered by environmental and structural factors only.
              </p>
            )}
            <IndicatorReport analysis={analysis} />
            {analysis.warnings
              .filter((w) => !(analysis.variables && !analysis.variables.burden_measure_found && w.startsWith('No malaria burden measure')))
              .map((w) => (
                <p key={w} className="warning" data-testid="analysis-warning">
                  {w}
                </p>
              ))}
            <a className="download" href="/api/analysis/export.csv" download data-testid="download-csv">
              Download the ranked table (CSV)
            </a>
            <div className="visuals">
              <TopWardsChart analysis={analysis} />
              {map && <RiskMap map={map} />}
            </div>
            <RankedTable analysis={analysis} />
          </section>
        )}
      </main>
      <footer>
        Release <span data-testid="release">{version ? version.release : 'unknown'}</span>
        {version?.instance ? ` on ${version.instance}` : ''}
      </footer>
    </div>
  );
}
