/** Post-deploy checks: version parity and session isolation, and how their reports render. */
export { checkVersionParity, type ParityInput, type ParityInstance, type ParityReport, type VersionAnswer } from './parity.ts';
export {
  checkSessionIsolation,
  isolationInputFromInventory,
  type ForgeryRecord,
  type ForgeryVector,
  type IsolationInput,
  type IsolationReport,
  type SessionRecord,
} from './isolation.ts';
export { overallOk, renderReportJson, renderReportTable, type CheckReport } from './report.ts';
export type { CheckResult, CheckStatus } from './types.ts';
