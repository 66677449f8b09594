/** Human text for deploy and rollback reports. */
import type { DeployReport } from './deploy.ts';
import { renderTable } from './table.ts';

/** Human summary of a deploy. */
export function renderDeployReportText(r: DeployReport): string {
  const table = renderTable(
    ['instance', 'before', 'now', 'uploaded', 'result'],
    r.instances.map((i) => [i.instance, i.before ?? '-', i.now ?? '-', i.uploadedBytes ? `${i.uploadedBytes} B` : 'skipped', i.error ? `${i.state}: ${i.error}` : i.state]),
  );
  const head = r.ok
    ? `deployed ${r.release} (digest ${r.digest.slice(0, 12)}) to ${r.instances.length} instances in ${r.durationMs} ms`
    : `deploy of ${r.release} FAILED in phase ${r.phase}: ${r.failure ?? 'see table'}`;
  return `${head}\n${table}\nstate: ${r.state}`;
}

