import { useMemo, useState } from 'react';
import type { AnalysisResult, WardResult } from '../api.ts';

type SortKey = 'rank' | 'ward_name' | 'ward_code' | 'score' | 'category';
const CATEGORY_ORDER = { high: 0, medium: 1, low: 2 };

function compare(a: WardResult, b: WardResult, key: SortKey): number {
  switch (key) {
    case 'ward_name':
      return a.ward_name.localeCompare(b.ward_name);
    case 'ward_code':
      return (a.ward_code ?? '').localeCompare(b.ward_code ?? '');
    case 'category':
      return CATEGORY_ORDER[a.category] - CATEGORY_ORDER[b.category] || a.rank - b.rank;
    case 'score':
      return a.score - b.score;
    case 'rank':
      return a.rank - b.rank;
  }
}

/** The ranked wards; click a column heading to sort by it (again to reverse). */
export function RankedTable({ analysis }: { analysis: AnalysisResult }) {
  const [sort, setSort] = useState<{ key: SortKey; ascending: boolean }>({ key: 'rank', ascending: true });
  const rows = useMemo(() => {
    const sorted = [...analysis.wards].sort((a, b) => compare(a, b, sort.key));
    return sort.ascending ? sorted : sorted.reverse();
  }, [analysis, sort]);
  const heading = (key: SortKey, label: string) => (
    <th
      aria-sort={sort.key === key ? (sort.ascending ? 'ascending' : 'descending') : 'none'}
      onClick={() => setSort({ key, ascending: sort.key === key ? !sort.ascending : key !== 'score' })}
      data-testid={`sort-${key}`}
    >
      {label}
      {sort.key === key ? (sort.ascending ? ' ▲' : ' ▼') : ''}
    </th>
  );
  return (
    <div className="table-wrap">
      <table data-testid="ranked-table">
        <thead>
          <tr>
            {heading('rank', 'Rank')}
            {heading('ward_name', 'Ward')}
            {heading('ward_code', 'Code')}
            {heading('score', analysis.method === 'pca' ? 'PCA index (0–1)' : 'Score')}
            {heading('category', 'Risk')}
            <th>Imputed</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((w) => (
            <tr key={`${w.line}`} data-testid="ward-row">
              <td>{w.rank}</td>
              <td className="ward">{w.ward_name}</td>
              <td>{w.ward_code ?? ''}</td>
              <td>{w.score.toFixed(3)}</td>
              <td>
                <span className={`badge ${w.category}`}>{w.category}</span>
              </td>
              <td className="imputed">{w.imputed.join(', ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
