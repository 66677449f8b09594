import type { AnalysisResult } from '../api.ts';

const WIDTH = 560;
const BAR = 18;
const GAP = 4;
const LABEL = 180;

/** Horizontal bar chart (SVG) of the `count` highest-risk wards' scores. */
export function TopWardsChart({ analysis, count = 15 }: { analysis: AnalysisResult; count?: number }) {
  const top = analysis.wards.slice(0, count);
  const height = top.length * (BAR + GAP) + 24;
  const scale = (WIDTH - LABEL - 50) / Math.max(1e-9, ...top.map((w) => w.score));
  return (
    <svg data-testid="top-chart" className="chart" viewBox={`0 0 ${WIDTH} ${height}`} width="100%" role="img" aria-label={`Top ${top.length} wards by risk score`}>
      {top.map((w, i) => {
        const y = i * (BAR + GAP);
        const label = w.ward_code ? `${w.ward_name} (${w.ward_code})` : w.ward_name;
        return (
          <g key={w.line} transform={`translate(0, ${y})`}>
            <text x={LABEL - 6} y={BAR - 5} textAnchor="end" className="bar-label">
              {label.length > 24 ? `${label.slice(0, 23)}…` : label}
            </text>
            <rect data-testid="bar" x={LABEL} y={0} height={BAR} width={Math.max(1, w.score * scale)} className={`bar ${w.category}`}>
              <title>{`${label}: ${w.score.toFixed(3)} (rank ${w.rank})`}</title>
            </rect>
            <text x={LABEL + Math.max(1, w.score * scale) + 4} y={BAR - 5} className="bar-value">
              {w.score.toFixed(2)}
            </text>
          </g>
        );
      })}
      <text x={LABEL} y={height - 6} className="axis-note">
        {analysis.method === 'pca' ? 'PCA index scaled to 0–1' : 'composite score, 0–1'}
      </text>
    </svg>
  );
}
