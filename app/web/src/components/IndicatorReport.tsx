import type { AnalysisResult } from '../api.ts';

function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined) return '';
  return Math.abs(v) >= 1000 || v === Math.round(v) ? v.toFixed(0) : v.toPrecision(3);
}

/** The indicators an analysis used: direction, where it came from, imputation, PCA loading. */
export function IndicatorReport({ analysis }: { analysis: AnalysisResult }) {
  const pca = analysis.method === 'pca';
  return (
    <details className="indicator-report" data-testid="indicator-report">
      <summary>
        {analysis.indicators.length} indicators used
        {analysis.indicators.some((i) => i.source === 'default') ? ' (chosen by default)' : ''}
      </summary>
      <table>
        <thead>
          <tr>
            <th>Indicator</th>
            <th>Higher value means</th>
            <th>Min</th>
            <th>Max</th>
            <th>Missing</th>
            <th>Imputed with (mean)</th>
            {pca && <th>PC1 loading</th>}
          </tr>
        </thead>
        <tbody>
          {analysis.indicators.map((i) => (
            <tr key={i.column}>
              <td>{i.column}</td>
              <td>{i.direction === 'positive' ? 'more risk' : 'less risk'}</td>
              <td>{fmt(i.min)}</td>
              <td>{fmt(i.max)}</td>
              <td>{i.missing || ''}</td>
              <td>{fmt(i.imputed_with)}</td>
              {pca && <td>{i.loading === undefined ? 'left out' : i.loading.toFixed(3)}</td>}
            </tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}
