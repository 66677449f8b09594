/** Human text for deploy and rollback reports. */
import type { DeployReport } from '../rollout/deploy.ts';
import { renderTable } from './table.ts';

/**
 * Human summary of a deploy or rollback: a headline, one row per instance (release before and
 * now, bytes uploaded, outcome), each instance's error on its own line, and the fleet's state.
 */
export function renderDeployReportText(r: DeployReport, verb = 'deploy'): string {
  const table = renderTable(
    ['instance', 'before', 'now', 'uploaded', 'result'],
    r.instances.map((i) => [
      i.instance,
      i.before ?? '-',
      i.now ?? '-',
      i.uploadedBytes ? `${i.uploadedBytes} B` : i.uploadFailed ? 'FAILED' : i.state === 'untouched' && !r.ok ? '-' : i.state === 'failed' && r.phase === 'prepare' ? '-' : 'skipped (on host)',
      i.state,
    ]),
  );
  const head = r.ok
    ? `${verb} of ${r.release} (digest ${r.digest.slice(0, 12)}) to ${r.instances.length} instances succeeded in ${r.durationMs} ms`
    : `${verb} of ${r.release} FAILED in phase ${r.phase}`;
  const errors = r.instances.filter((i) => i.error).map((i) => `  ${i.instance}: ${i.error}`);
  const cause = !r.ok && r.failure && !r.instances.some((i) => i.error && r.failure!.includes(i.error)) ? [`cause: ${r.failure}`] : [];
  return [head, ...cause, table, ...(errors.length ? ['errors:', ...errors] : []), `state: ${r.state}`].join('\n');
}
