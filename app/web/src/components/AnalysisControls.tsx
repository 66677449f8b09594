import { useEffect, useState } from 'react';
import type { AnalysisResult, ColumnDetail, Direction, Method } from '../api.ts';

interface Choice {
  selected: boolean;
  direction: Direction;
}

export interface AnalysisControlsProps {
  columns: ColumnDetail[];
  analysis: AnalysisResult | null;
  busy: boolean;
  onRun: (method: Method, indicators: { column: string; direction: Direction }[]) => void;
}

/** Indicator choice with direction, and the method. Starts from the last analysis' choice. */
export function AnalysisControls({ columns, analysis, busy, onRun }: AnalysisControlsProps) {
  const candidates = columns.filter((c) => c.type === 'number' && (c.role === 'indicator' || c.role === 'id'));
  const [method, setMethod] = useState<Method>(analysis?.method ?? 'composite');
  const [choices, setChoices] = useState<Record<string, Choice>>({});

  useEffect(() => {
    const used = new Map((analysis?.indicators ?? []).map((i) => [i.column, i.direction]));
    setChoices(Object.fromEntries(candidates.map((c) => [c.name, { selected: used.has(c.name), direction: used.get(c.name) ?? 'positive' }])));
    if (analysis) setMethod(analysis.method);
    // Reset only when a new analysis or table arrives.
  }, [analysis, columns]);

  const chosen = Object.entries(choices)
    .filter(([, c]) => c.selected)
    .map(([column, c]) => ({ column, direction: c.direction }));

  return (
    <section className="card" data-testid="analysis-controls">
      <h2>Indicators</h2>
      <p className="hint">
        “Higher = more risk” for rainfall, parasite rate, wetness…; “higher = less risk” for distance to water, housing quality, elevation, urban share.
      </p>
      <div className="indicator-grid">
        {candidates.map((c) => {
          const choice = choices[c.name] ?? { selected: false, direction: 'positive' as Direction };
          return (
            <div key={c.name} className="indicator">
              <label>
                <input
                  type="checkbox"
                  data-testid={`indicator-${c.name}`}
                  checked={choice.selected}
                  onChange={(e) => setChoices({ ...choices, [c.name]: { ...choice, selected: e.target.checked } })}
                />
                {c.name}
                {c.missing > 0 && <span className="missing-count"> ({c.missing} missing)</span>}
              </label>
              <select
                aria-label={`direction of ${c.name}`}
                value={choice.direction}
                onChange={(e) => setChoices({ ...choices, [c.name]: { ...choice, direction: e.target.value as Direction } })}
              >
                <option value="positive">higher = more risk</option>
                <option value="negative">higher = less risk</option>
              </select>
            </div>
          );
        })}
      </div>
      <div className="run">
        <label>
          Method{' '}
          <select data-testid="method" value={method} onChange={(e) => setMethod(e.target.value as Method)}>
            <option value="composite">Composite score (min-max, mean)</option>
            <option value="pca">PCA index</option>
          </select>
        </label>
        <button type="button" data-testid="run-analysis" disabled={busy || chosen.length === 0} onClick={() => onRun(method, chosen)}>
          Run analysis
        </button>
      </div>
    </section>
  );
}
