/**
 * The shape every post-deploy check reports in, so `report.ts` can render parity and isolation
 * alike and `lockstep verify --json` stays one format.
 */

/** `skip` means the check could not apply (e.g. no proxy in the inventory); it does not fail a run. */
export type CheckStatus = 'pass' | 'fail' | 'skip';

/** One line of a report. A failure names its subject and both what was expected and what was found. */
export interface CheckResult {
  /** What was checked, e.g. "version (direct)", "forged session_id ignored". */
  check: string;
  /** Which thing: an instance name, an upload path, "proxy", "all sessions". */
  subject: string;
  status: CheckStatus;
  /** What a passing system shows. Full digests and ids here; the table shortens them. */
  expected: string;
  /** What was observed. For a pass, a short confirmation. */
  found: string;
}

/** True when no check failed (skips do not fail). */
export function allPassed(checks: readonly CheckResult[]): boolean {
  return checks.every((c) => c.status !== 'fail');
}
