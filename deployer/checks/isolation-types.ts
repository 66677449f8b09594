/**
 * What the session-isolation check takes and gives back: its input (IsolationInput, built from
 * the inventory's `app.checks`), what each simulated client and each forgery attempt sent and saw
 * (SessionRecord, ForgeryRecord), and the report (IsolationReport). Types only, shared by the run
 * (isolation.ts) and the probes (isolation-probes.ts); isolation.ts re-exports them.
 */
import type { CheckResult } from './types.ts';
import type { ForgeryVector } from './session-client.ts';

export interface IsolationInput {
  /** Base URL users reach the app through, e.g. http://127.0.0.1:8080 */
  proxyUrl: string;
  /** Inventory `app.checks.upload_paths`; clients are spread over them round robin. */
  uploadPaths: readonly string[];
  /** Inventory `app.checks.upload_field`: the multipart field holding the CSV. */
  uploadField: string;
  /** Inventory `app.checks.session_path`: GET returns the caller's session data. */
  sessionPath: string;
  /** K, inventory `app.checks.concurrent_sessions`. Default 5. */
  concurrentSessions?: number;
  /**
   * Name of the proxy's affinity cookie, when known. It lets the checks tell it apart from the
   * app's session cookie; without it, the session cookie is the one whose value holds the id.
   */
  affinityCookie?: string;
  /** Per request, in ms. Default 10000. */
  timeoutMs?: number;
}

export interface SessionRecord {
  /** 1-based client number, as used in messages ("#2"). */
  client: number;
  uploadPath: string;
  marker: string;
  status: number | null;
  sessionId: string | null;
  /** Cookie names the upload response set. */
  cookies: string[];
  error?: string;
}

export interface ForgeryRecord {
  uploadPath: string;
  vector: ForgeryVector;
  forgedId: string;
  status: number | null;
  sessionId: string | null;
  /** Whether the forger's session read showed the victim's marker; null when not read. */
  sawVictimData: boolean | null;
  error?: string;
}

export interface IsolationReport {
  kind: 'isolation';
  ok: boolean;
  proxyUrl: string;
  checks: CheckResult[];
  sessions: SessionRecord[];
  forgeries: ForgeryRecord[];
}
