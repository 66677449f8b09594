/**
 * Session isolation, checked through the proxy the way the incident was checked by hand: K
 * clients upload at the same moment, each with a unique marker and its own cookies, and each
 * must get its own server-made session that nobody else can read or hijack. This file owns one
 * run of the check (checkSessionIsolation: the simulated users, their own connection pools, the
 * probes in order, the report) and the input built from the inventory; the probes themselves are
 * in isolation-probes.ts, the input and report types in isolation-types.ts (re-exported here).
 */
import type { Agent } from 'undici';
import { allPassed, type CheckResult } from './types.ts';
import { CookieJar } from './cookie-jar.ts';
import { createClientPool } from './http.ts';
import type { SessionClient } from './session-client.ts';
import type { IsolationInput, IsolationReport } from './isolation-types.ts';
import { checkForgedIds, checkNoCookieNoData, checkOwnDataOnly, checkSessionCookies, newMarker, uploadConcurrently, type Run } from './isolation-probes.ts';

export type { ForgeryVector } from './session-client.ts';
export type { ForgeryRecord, IsolationInput, IsolationReport, SessionRecord } from './isolation-types.ts';

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Check session isolation through the proxy.
 * @param input the proxy URL and the inventory's `app.checks` settings.
 * @returns one `CheckResult` per property (uploads succeed, distinct ids, UUIDv4, HttpOnly
 *   cookie, own data only, forged ids ignored per upload path and place, the victim's session
 *   untouched, no cookie no data) plus what each client sent and saw. About 3K + 8 x paths
 *   requests, K of them at once. Network errors and bad answers are failures in the report;
 *   nothing is thrown for them.
 * @throws Error only for bad input (no upload path, K < 1).
 */
export async function checkSessionIsolation(input: IsolationInput): Promise<IsolationReport> {
  const k = input.concurrentSessions ?? 5;
  if (input.uploadPaths.length === 0) throw new Error('checkSessionIsolation: no upload paths');
  if (!Number.isInteger(k) || k < 1) throw new Error(`checkSessionIsolation: concurrentSessions must be >= 1, got ${k}`);
  const base = input.proxyUrl.replace(/\/+$/, '');
  const timeoutMs = input.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const pools: Agent[] = [];
  // Each simulated user gets its own connections as well as its own cookies: a proxy or app that
  // keyed anything on the connection would otherwise look isolated when it is not.
  const newClient = (jar = new CookieJar()): SessionClient => {
    const pool = createClientPool(timeoutMs);
    pools.push(pool);
    return { base, jar, pool, timeoutMs };
  };
  try {
    const run: Run = {
      input,
      k,
      newClient,
      users: Array.from({ length: k }, (_, i) => ({
        record: {
          client: i + 1,
          uploadPath: input.uploadPaths[i % input.uploadPaths.length]!,
          marker: newMarker(),
          status: null,
          sessionId: null,
          cookies: [],
        },
        client: newClient(),
      })),
    };
    const checks: CheckResult[] = [];
    const uploaded = await uploadConcurrently(run, checks);
    checks.push(checkSessionCookies(run, uploaded));
    checks.push(...(await checkOwnDataOnly(run, uploaded)));
    const forgeries = await checkForgedIds(run, uploaded, checks);
    checks.push(await checkNoCookieNoData(run, uploaded));
    return {
      kind: 'isolation',
      ok: allPassed(checks),
      proxyUrl: base,
      checks,
      sessions: run.users.map((u) => ({ ...u.record })),
      forgeries,
    };
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}

/**
 * Build the isolation input from the inventory's `app.checks` section.
 * @param checks `inventory.app.checks`. @param proxyUrl where users reach the app.
 * @param extra the proxy's affinity cookie name and a per-request timeout (ms), when wanted.
 */
export function isolationInputFromInventory(
  checks: { upload_paths: string[]; upload_field: string; session_path: string; concurrent_sessions: number },
  proxyUrl: string,
  extra: Pick<IsolationInput, 'affinityCookie' | 'timeoutMs'> = {},
): IsolationInput {
  return {
    proxyUrl,
    uploadPaths: checks.upload_paths,
    uploadField: checks.upload_field,
    sessionPath: checks.session_path,
    concurrentSessions: checks.concurrent_sessions,
    ...extra,
  };
}
