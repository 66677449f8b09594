/**
 * Post-deploy checks: version parity and session isolation, and how their reports render.
 *
 * Wiring (`lockstep verify`, and the end of `lockstep deploy`):
 *   const parity = await checkVersionParity({
 *     instances: inventory.instances,
 *     expected: { release: manifest.release, digest: manifest.digest },
 *     proxyUrl,                                   // omitted -> proxy rows are SKIP
 *     versionPath: inventory.app.version_path,
 *     readCurrentManifest: (inst) =>
 *       transports.get(inst.name)!.readFile(`${layoutOf(inst.deployTo).current}/${MANIFEST_FILE}`),
 *   });
 *   const isolation = await checkSessionIsolation(
 *     isolationInputFromInventory(inventory.app.checks, proxyUrl, { affinityCookie }));
 *   print(json ? renderReportJson([parity, isolation]) : renderReportTable([parity, isolation]));
 *   exit code: overallOk([parity, isolation]) ? 0 : 1
 */
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
