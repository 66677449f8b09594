import type { AnalysisResult } from '../api.ts';

function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined) return '';
  return Math.abs(v) >= 1000 || v === Math.round(v) ? v.toFixed(0) : v.toPrecision(3);
}

/** Short name of the source of a direction rule (the full text is the cell's tooltip and in app/README.md). */
const RULE = { burden: 'WHO 2018 (a burden measure)', covariate: 'app convention', size: 'app rule' } as const;

function recognised(i: AnalysisResult['indicators'][number]): string {
  if (!i.variable) return i.source === 'request' ? 'your choice (not in the synonym table)' : '';
  return `${i.variable.label} (${i.variable.kind === 'burden' ? 'malaria burden measure' : i.variable.kind}; name matched “${i.variable.synonym}”)`;
}

/**
 * The indicators an analysis used: what the synonym table recognised each as and why (the
 * matched synonym), the direction and the source of its rule, imputation, PCA loading; and the
 * numeric columns a default choice left out, with the reason.
 */
export function IndicatorReport({ analysis }: { analysis: AnalysisResult }) {
  const pca = analysis.method === 'pca';
  return (
    <details className="indicator-report" data-testid="indicator-report">
      <summary>
        {analysis.indicators.length} indicators used
        {analysis.indicators.some((i) => i.source === 'default') ? ' (chosen by default)' : ''}
        {analysis.variables?.burden_measure_found ? `; malaria burden measure: ${analysis.variables.burden_measures.join(', ')}` : ''}
      </summary>
      <table>
        <thead>
          <tr>
            <th>Indicator</th>
            <th>Higher value means</th>
            <th>Recognised as</th>
            <th>Source of the direction</th>
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
              <td className="why" data-testid="recognised-as">
                {recognised(i)}
              </td>
              <td className="why" title={i.source === 'request' ? undefined : i.variable?.rule_source}>
                {i.source === 'request' ? 'your choice' : i.variable ? RULE[i.variable.kind] : ''}
              </td>
              <td>{fmt(i.min)}</td>
              <td>{fmt(i.max)}</td>
              <td>{i.missing || ''}</td>
              <td>{fmt(i.imputed_with)}</td>
              {pca && <td>{i.loading === undefined ? 'left out' : i.loading.toFixed(3)}</td>}
            </tr>
          ))}
        </tbody>
      </table>
      {analysis.variables && analysis.variables.not_used.length > 0 && (
        <p className="hint" data-testid="not-used">
          Not used: {analysis.variables.not_used.map((n) => `${n.column} (${n.reason})`).join('; ')}.
        </p>
      )}
      {analysis.indicators.some((i) => i.variable && i.source === 'default') && (
        <p className="hint">
          Sources of the directions: WHO, <i>Malaria surveillance, monitoring &amp; evaluation: a reference manual</i> (2018) for burden
          measures (test positivity, parasite rate, incidence: higher = more malaria); the app&apos;s convention for environmental and
          structural factors (change a direction above when local evidence differs). Details in the app README.
        </p>
      )}
    </details>
  );
}
