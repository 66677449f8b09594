/**
 * The probes of the session-isolation check, each one property: K uploads at once get distinct
 * UUIDv4 sessions (uploadConcurrently), the session cookie is HttpOnly (checkSessionCookies),
 * each session reads its own data and nobody else's (checkOwnDataOnly), a forged session id is
 * ignored on every upload path and in every place (checkForgedIds), and no session cookie means
 * no data (checkNoCookieNoData). They share one run's state (Run, User); isolation.ts sets it
 * up, calls them in order and builds the report.
 */
import { randomUUID } from 'node:crypto';
import { validate as isUuid, version as uuidVersion } from 'uuid';
import type { CheckResult } from './types.ts';
import { CookieJar } from './cookie-jar.ts';
import { describeRead, FORGERY_VECTORS, readSession, uploadCsv, type SessionClient } from './session-client.ts';
import type { ForgeryRecord, IsolationInput, SessionRecord } from './isolation-types.ts';

/** One simulated user: what it sent and got, and its own cookies and connections. */
export interface User {
  record: SessionRecord;
  client: SessionClient;
}

/** Shared state of one run of the checks. */
export interface Run {
  input: IsolationInput;
  k: number;
  users: User[];
  /** A new client with its own connection pool (and the given cookies, else none). */
  newClient(jar?: CookieJar): SessionClient;
}

/** A unique marker for one upload, so its rows can be recognised in any session. */
export function newMarker(): string {
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

/** K uploads at once, like the incident's five per-state uploads. Returns the users that got a session. */
export async function uploadConcurrently(run: Run, checks: CheckResult[]): Promise<User[]> {
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
export function checkSessionCookies(run: Run, uploaded: User[]): CheckResult {
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
export async function checkOwnDataOnly(run: Run, uploaded: User[]): Promise<CheckResult[]> {
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
export async function checkForgedIds(run: Run, uploaded: User[], checks: CheckResult[]): Promise<ForgeryRecord[]> {
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
export async function checkNoCookieNoData(run: Run, uploaded: User[]): Promise<CheckResult> {
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
