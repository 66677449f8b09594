/**
 * Session isolation, checked through the proxy the way the incident was checked by hand: K
 * clients upload at the same moment, each with a unique marker and its own cookies, and each
 * must get its own server-made session that nobody else can read or hijack.
 */
import { randomUUID } from 'node:crypto';
import type { Agent } from 'undici';
import { validate as isUuid, version as uuidVersion } from 'uuid';
import { allPassed, type CheckResult } from './types.ts';
import { CookieJar } from './cookie-jar.ts';
import { createClientPool } from './http.ts';
import {
  describeRead,
  FORGERY_VECTORS,
  readSession,
  uploadCsv,
  type ForgeryVector,
  type SessionClient,
} from './session-client.ts';

export type { ForgeryVector } from './session-client.ts';

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

const DEFAULT_TIMEOUT_MS = 10_000;

/** One simulated user: what it sent and got, and its own cookies and connections. */
interface User {
  record: SessionRecord;
  client: SessionClient;
}

/** Shared state of one run of the checks. */
interface Run {
  input: IsolationInput;
  k: number;
  users: User[];
  /** A new client with its own connection pool (and the given cookies, else none). */
  newClient(jar?: CookieJar): SessionClient;
}

function newMarker(): string {
  return `lockstep-check-${randomUUID()}`;
}

function label(r: { client: number }): string {
  return `#${r.client}`;
}

function isUuidV4(id: string): boolean {
  return isUuid(id) && uuidVersion(id) === 4;
}

function decoded(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

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

/** K uploads at once, like the incident's five per-state uploads. Returns the users that got a session. */
async function uploadConcurrently(run: Run, checks: CheckResult[]): Promise<User[]> {
  const { k } = run;
  await Promise.all(
    run.users.map(async (u) => {
      Object.assign(u.record, await uploadCsv(u.client, u.record.uploadPath, run.input.uploadField, u.record.marker));
    }),
  );
  const uploaded = run.users.filter((u) => !u.record.error && u.record.sessionId !== null);
  const failed = run.users.filter((u) => !uploaded.includes(u));
  checks.push({
    check: 'concurrent uploads succeed',
    subject: 'all sessions',
    status: failed.length === 0 ? 'pass' : 'fail',
    expected: `${k}/${k} uploads answer 200 with a session_id`,
    found:
      failed.length === 0
        ? `${k}/${k} ok (${run.input.uploadPaths.join(', ')})`
        : failed.map((u) => `${label(u.record)} ${u.record.uploadPath}: ${u.record.error}`).join('; '),
  });

  const owners = new Map<string, number[]>();
  for (const u of uploaded) owners.set(u.record.sessionId!, [...(owners.get(u.record.sessionId!) ?? []), u.record.client]);
  const shared = [...owners].filter(([, who]) => who.length > 1);
  checks.push({
    check: 'distinct session ids',
    subject: 'all sessions',
    status: uploaded.length === k && shared.length === 0 ? 'pass' : 'fail',
    expected: `${k} distinct session ids`,
    found:
      shared.length === 0
        ? `${owners.size} distinct${uploaded.length < k ? ` (only ${uploaded.length} uploads succeeded)` : ''}`
        : `${owners.size} distinct; ${shared.map(([id, who]) => `${id} shared by ${who.map((n) => `#${n}`).join(', ')}`).join('; ')}`,
  });

  const notV4 = uploaded.filter((u) => !isUuidV4(u.record.sessionId!));
  checks.push({
    check: 'session ids are UUIDv4',
    subject: 'all sessions',
    status: uploaded.length > 0 && notV4.length === 0 ? 'pass' : 'fail',
    expected: 'every session id a valid UUIDv4',
    found:
      uploaded.length === 0
        ? 'no session ids to check'
        : notV4.length === 0
          ? `${uploaded.length}/${uploaded.length} valid`
          : notV4.map((u) => `${label(u.record)}: ${JSON.stringify(u.record.sessionId)}`).join('; '),
  });
  return uploaded;
}

/** Names of the app's session cookie(s) in a user's jar, as opposed to the proxy's affinity cookie. */
function sessionCookieNames(run: Run, u: User): string[] {
  const affinity = run.input.affinityCookie;
  return u.client.jar
    .list()
    .filter((c) =>
      affinity !== undefined ? c.name !== affinity : u.record.sessionId !== null && decoded(c.value).includes(u.record.sessionId),
    )
    .map((c) => c.name);
}

/**
 * A user's cookies minus its session cookie: still pinned to the same instance by the affinity
 * cookie, so a refusal there proves the cookie (not the instance) guards the data. When the
 * session cookie cannot be told apart, no cookie at all.
 */
function withoutSessionCookie(run: Run, u: User): CookieJar {
  const drop = new Set(sessionCookieNames(run, u));
  if (drop.size === 0) return new CookieJar();
  return u.client.jar.filter((c) => !drop.has(c.name));
}

/** The session cookie must be HttpOnly: page scripts (and so a persisted store) cannot read it. */
function checkSessionCookies(run: Run, uploaded: User[]): CheckResult {
  const problems: string[] = [];
  let unidentified = 0;
  for (const u of uploaded) {
    const names = sessionCookieNames(run, u);
    if (names.length === 0) {
      if (u.record.cookies.length === 0) problems.push(`${label(u.record)}: the upload set no cookie`);
      else unidentified++;
      continue;
    }
    const readable = names.filter((n) => !u.client.jar.get(n)!.httpOnly);
    if (readable.length > 0) problems.push(`${label(u.record)}: ${readable.join(', ')} not HttpOnly`);
  }
  const identified = uploaded.length - unidentified;
  return {
    check: 'session cookie is HttpOnly',
    subject: 'all sessions',
    status: problems.length > 0 ? 'fail' : identified === 0 ? 'skip' : 'pass',
    expected: 'each upload sets an HttpOnly session cookie',
    found:
      problems.length > 0
        ? problems.join('; ')
        : unidentified > 0
          ? `${identified}/${uploaded.length} HttpOnly; ${unidentified} not identified (value does not hold the id; ` +
            "pass the proxy's affinity cookie name)"
          : `${uploaded.length}/${uploaded.length} HttpOnly`,
  };
}

/** Each user reads its own session: its marker, and nobody else's. */
async function checkOwnDataOnly(run: Run, uploaded: User[]): Promise<CheckResult[]> {
  const { k } = run;
  const reads = await Promise.all(uploaded.map(async (u) => ({ u, res: await readSession(u.client, run.input.sessionPath) })));
  const missingOwn: string[] = [];
  const seesOthers: string[] = [];
  for (const { u, res } of reads) {
    if (res.status !== 200) {
      missingOwn.push(`${label(u.record)}: ${describeRead(res)}`);
      continue;
    }
    if (!res.text.includes(u.record.marker)) missingOwn.push(`${label(u.record)} (${u.record.sessionId}): own marker missing`);
    const foreign = run.users.filter((o) => o !== u && res.text.includes(o.record.marker));
    if (foreign.length > 0) {
      seesOthers.push(`${label(u.record)} (${u.record.sessionId}) sees data of ${foreign.map((o) => label(o.record)).join(', ')}`);
    }
  }
  return [
    {
      check: 'each session reads its own data',
      subject: 'all sessions',
      status: uploaded.length === k && missingOwn.length === 0 ? 'pass' : 'fail',
      expected: `${k}/${k} sessions return their own marker`,
      found: missingOwn.length === 0 ? `${reads.length}/${k} ok` : missingOwn.join('; '),
    },
    {
      check: "no session reads another's data",
      subject: 'all sessions',
      status: reads.length > 0 && seesOthers.length === 0 ? 'pass' : 'fail',
      expected: "no session returns another client's marker",
      found:
        reads.length === 0
          ? 'no session could be read'
          : seesOthers.length === 0
            ? `${reads.length} sessions clean`
            : seesOthers.join('; '),
    },
  ];
}

/**
 * A newcomer who sends a real victim's id, in each place an app might look, on each upload
 * path, must get a fresh session that cannot see the victim's data, and the victim's session
 * must not receive the newcomer's rows.
 */
async function checkForgedIds(run: Run, uploaded: User[], checks: CheckResult[]): Promise<ForgeryRecord[]> {
  const victim = uploaded[0];
  if (!victim) {
    checks.push({
      check: 'forged session_id ignored',
      subject: 'all upload paths',
      status: 'fail',
      expected: "a fresh session for an upload carrying another client's id",
      found: 'not checked: no upload succeeded, so there is no real id to forge',
    });
    return [];
  }
  const victimId = victim.record.sessionId!;
  const attempts = run.input.uploadPaths.flatMap((path) =>
    FORGERY_VECTORS.map((vector) => ({ path, vector, marker: newMarker() })),
  );
  const forgeries = await Promise.all(
    attempts.map(async ({ path, vector, marker }): Promise<ForgeryRecord> => {
      // The victim's affinity cookie sends the forger to the instance holding the victim's data.
      const forger = run.newClient(withoutSessionCookie(run, victim));
      const forged = { vector, id: victimId };
      const up = await uploadCsv(forger, path, run.input.uploadField, marker, forged);
      const record: ForgeryRecord = {
        uploadPath: path,
        vector,
        forgedId: victimId,
        status: up.status,
        sessionId: up.sessionId,
        sawVictimData: null,
        ...(up.error ? { error: up.error } : {}),
      };
      if (!up.error) {
        // The read carries the forged id too, so an app that trusts it on reads is caught as well.
        const read = await readSession(forger, run.input.sessionPath, forged);
        record.sawVictimData = read.text.includes(victim.record.marker);
      }
      return record;
    }),
  );
  for (const f of forgeries) {
    const problems: string[] = [];
    if (f.error) problems.push(`upload failed: ${f.error}`);
    else {
      if (f.sessionId === victimId) problems.push(`got the forged id ${victimId} back`);
      else if (!isUuidV4(f.sessionId!)) problems.push(`got ${JSON.stringify(f.sessionId)}, not a UUIDv4`);
      if (f.sawVictimData) problems.push(`its session shows ${label(victim.record)}'s data`);
    }
    checks.push({
      check: 'forged session_id ignored',
      subject: `${f.uploadPath} (${f.vector})`,
      status: problems.length === 0 ? 'pass' : 'fail',
      expected: `a fresh UUIDv4, not ${label(victim.record)}'s ${victimId}, and none of its data`,
      found: problems.length === 0 ? `fresh id ${f.sessionId}` : problems.join('; '),
    });
  }

  // An app that trusted the forged id has written the forger's rows into the victim's session.
  const again = await readSession(victim.client, run.input.sessionPath);
  const intruders = attempts.filter((a) => again.text.includes(a.marker)).map((a) => `${a.path} (${a.vector})`);
  const problems: string[] = [];
  if (again.status !== 200) problems.push(describeRead(again));
  else {
    if (!again.text.includes(victim.record.marker)) problems.push('own marker missing');
    if (intruders.length > 0) problems.push(`contains data from forged uploads to ${intruders.join(', ')}`);
  }
  checks.push({
    check: 'victim session untouched by forgeries',
    subject: `${label(victim.record)} (${victimId})`,
    status: problems.length === 0 ? 'pass' : 'fail',
    expected: 'only its own marker',
    found: problems.length === 0 ? 'only its own marker' : problems.join('; '),
  });
  return forgeries;
}

/**
 * Without the session cookie the data must stay hidden: each user's affinity cookie alone, no
 * cookies at all, and no cookie but the first user's id in the query or an X-Session-Id header.
 */
async function checkNoCookieNoData(run: Run, uploaded: User[]): Promise<CheckResult> {
  const path = run.input.sessionPath;
  const probes: Array<{ who: string; read: () => ReturnType<typeof readSession> }> = uploaded.map((u) => ({
    who: `${label(u.record)} without session cookie`,
    read: () => readSession(run.newClient(withoutSessionCookie(run, u)), path),
  }));
  probes.push({ who: 'no cookies at all', read: () => readSession(run.newClient(), path) });
  const victim = uploaded[0];
  if (victim) {
    for (const vector of ['query', 'header'] as const) {
      probes.push({
        who: `no session cookie, ${label(victim.record)}'s id in the ${vector}`,
        read: () => readSession(run.newClient(withoutSessionCookie(run, victim)), path, { vector, id: victim.record.sessionId! }),
      });
    }
  }
  const answers = await Promise.all(probes.map(async (p) => ({ who: p.who, res: await p.read() })));
  const leaks: string[] = [];
  const statuses = new Map<string, number>();
  for (const { who, res } of answers) {
    const key = res.status === null ? 'no answer' : `HTTP ${res.status}`;
    statuses.set(key, (statuses.get(key) ?? 0) + 1);
    // An unanswered request proves nothing either way, so it cannot count as refused.
    if (res.status === null) {
      leaks.push(`${who}: not checked (${res.error})`);
      continue;
    }
    if (res.status < 200 || res.status > 299) continue;
    const shown = run.users.filter((u) => res.text.includes(u.record.marker));
    if (shown.length > 0) leaks.push(`${who}: HTTP ${res.status} with data of ${shown.map((u) => label(u.record)).join(', ')}`);
  }
  return {
    check: 'no session cookie, no data',
    subject: 'all sessions',
    status: leaks.length === 0 ? 'pass' : 'fail',
    expected: 'refused (non-2xx) or no session data',
    found:
      leaks.length === 0
        ? `${answers.length} requests: ${[...statuses].map(([s, n]) => `${s} x${n}`).join(', ')}`
        : leaks.join('; '),
  };
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
