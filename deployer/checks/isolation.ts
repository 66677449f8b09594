/**
 * Session isolation, checked through the proxy the way the incident was checked by hand: K
 * clients upload at the same moment, each with a unique marker and its own cookies, and each
 * must get its own server-made session that nobody else can read or hijack.
 */
import { randomUUID } from 'node:crypto';
import { Blob } from 'node:buffer';
import { FormData, type Agent } from 'undici';
import { validate as isUuid, version as uuidVersion } from 'uuid';
import { allPassed, type CheckResult } from './types.ts';
import { CookieJar } from './cookie-jar.ts';
import { createClientPool, httpRequest, parseJson, snippet } from './http.ts';

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

/** Where a forged id was put. All four were trusted somewhere in the incident's code or could be. */
export type ForgeryVector = 'form' | 'query' | 'header' | 'cookie';
const FORGERY_VECTORS: readonly ForgeryVector[] = ['form', 'query', 'header', 'cookie'];

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

interface Client {
  record: SessionRecord;
  jar: CookieJar;
  pool: Agent;
}

/** A small CSV in the shape the app expects, with the marker in cells of every row. */
function markerCsv(marker: string): string {
  return ['WardName,population,tpr', `${marker},1200,0.31`, `${marker}-b,800,0.12`, `${marker}-c,450,0.07`, ''].join('\n');
}

function label(r: SessionRecord): string {
  return `#${r.client}`;
}

function isUuidV4(id: string): boolean {
  return isUuid(id) && uuidVersion(id) === 4;
}

/**
 * Upload one CSV. `forged` adds a client-chosen session id in the given place.
 * @returns status, the session id from the JSON answer and the cookie names set, or the error.
 */
async function upload(
  base: string,
  path: string,
  field: string,
  marker: string,
  jar: CookieJar,
  pool: Agent,
  timeoutMs: number,
  forged?: { vector: ForgeryVector; id: string },
): Promise<{ status: number | null; sessionId: string | null; cookies: string[]; error?: string }> {
  const form = new FormData();
  // The forged field goes first so a streaming parser has seen it by the time the file arrives.
  if (forged?.vector === 'form') form.append('session_id', forged.id);
  form.append(field, new Blob([markerCsv(marker)], { type: 'text/csv' }), `${marker}.csv`);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (forged?.vector === 'header') headers['x-session-id'] = forged.id;
  if (forged?.vector === 'cookie') jar.set('session_id', forged.id);
  const cookie = jar.header();
  if (cookie) headers.cookie = cookie;
  const query = forged?.vector === 'query' ? `?session_id=${encodeURIComponent(forged.id)}` : '';
  const res = await httpRequest(base + path + query, { method: 'POST', headers, body: form, timeoutMs, dispatcher: pool });
  if (!res.ok) return { status: null, sessionId: null, cookies: [], error: res.error };
  const cookies = jar.store(res.headers['set-cookie']);
  const body = parseJson(res.text) as { session_id?: unknown } | undefined;
  const sessionId = typeof body?.session_id === 'string' ? body.session_id : null;
  if (res.status !== 200) return { status: res.status, sessionId, cookies, error: `HTTP ${res.status}: ${snippet(res.text)}` };
  if (sessionId === null) return { status: res.status, sessionId, cookies, error: `no session_id in answer: ${snippet(res.text)}` };
  return { status: res.status, sessionId, cookies };
}

/** GET the session path with exactly the cookies in `jar`. */
async function readSession(
  base: string,
  path: string,
  jar: CookieJar,
  pool: Agent,
  timeoutMs: number,
): Promise<{ status: number | null; text: string; error?: string }> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const cookie = jar.header();
  if (cookie) headers.cookie = cookie;
  const res = await httpRequest(base + path, { headers, timeoutMs, dispatcher: pool });
  if (!res.ok) return { status: null, text: '', error: res.error };
  return { status: res.status, text: res.text };
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
 * @returns one `CheckResult` per property (uploads succeed, distinct ids, UUIDv4, own data only,
 *   forged ids ignored per upload path and place, no cookie no data) plus what each client saw.
 *   Network errors and bad answers are failures in the report; nothing is thrown for them.
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
  const newPool = (): Agent => {
    const p = createClientPool(timeoutMs);
    pools.push(p);
    return p;
  };
  try {
    return await runChecks(input, base, k, timeoutMs, newPool);
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}

async function runChecks(
  input: IsolationInput,
  base: string,
  k: number,
  timeoutMs: number,
  newPool: () => Agent,
): Promise<IsolationReport> {
  const checks: CheckResult[] = [];
  const clients: Client[] = Array.from({ length: k }, (_, i) => ({
    record: {
      client: i + 1,
      uploadPath: input.uploadPaths[i % input.uploadPaths.length]!,
      marker: `lockstep-check-${randomUUID()}`,
      status: null,
      sessionId: null,
      cookies: [],
    },
    jar: new CookieJar(),
    pool: newPool(),
  }));

  // 1. K concurrent uploads, like the incident's five per-state uploads.
  await Promise.all(
    clients.map(async (c) => {
      const r = await upload(base, c.record.uploadPath, input.uploadField, c.record.marker, c.jar, c.pool, timeoutMs);
      Object.assign(c.record, r);
    }),
  );
  const uploaded = clients.filter((c) => !c.record.error && c.record.sessionId !== null);
  const failedUploads = clients.filter((c) => !uploaded.includes(c));
  checks.push({
    check: 'concurrent uploads succeed',
    subject: 'all sessions',
    status: failedUploads.length === 0 ? 'pass' : 'fail',
    expected: `${k}/${k} uploads answer 200 with a session_id`,
    found:
      failedUploads.length === 0
        ? `${k}/${k} ok (${input.uploadPaths.join(', ')})`
        : failedUploads.map((c) => `${label(c.record)} ${c.record.uploadPath}: ${c.record.error}`).join('; '),
  });

  const byId = new Map<string, number[]>();
  for (const c of uploaded) byId.set(c.record.sessionId!, [...(byId.get(c.record.sessionId!) ?? []), c.record.client]);
  const shared = [...byId].filter(([, owners]) => owners.length > 1);
  checks.push({
    check: 'distinct session ids',
    subject: 'all sessions',
    status: uploaded.length === k && shared.length === 0 ? 'pass' : 'fail',
    expected: `${k} distinct session ids`,
    found:
      shared.length === 0
        ? `${byId.size} distinct${uploaded.length < k ? ` (only ${uploaded.length} uploads succeeded)` : ''}`
        : `${byId.size} distinct; ${shared.map(([id, owners]) => `${id} shared by ${owners.map((n) => `#${n}`).join(', ')}`).join('; ')}`,
  });

  const notV4 = uploaded.filter((c) => !isUuidV4(c.record.sessionId!));
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
          : notV4.map((c) => `${label(c.record)}: ${JSON.stringify(c.record.sessionId)}`).join('; '),
  });

  // Which cookies are the app's session cookie (as opposed to the proxy's affinity cookie).
  const sessionCookieNames = (c: Client): string[] =>
    c.jar
      .list()
      .filter((ck) =>
        input.affinityCookie !== undefined
          ? ck.name !== input.affinityCookie
          : c.record.sessionId !== null && decoded(ck.value).includes(c.record.sessionId),
      )
      .map((ck) => ck.name);
  // The client's cookies minus its session cookie: still pinned to the same instance by the
  // affinity cookie, so a refusal there proves the cookie (not the instance) guards the data.
  const withoutSession = (c: Client): CookieJar => {
    const drop = new Set(sessionCookieNames(c));
    if (drop.size === 0) return new CookieJar();
    return c.jar.filter((ck) => !drop.has(ck.name));
  };

  const cookieProblems: string[] = [];
  let cookieUnknown = 0;
  for (const c of uploaded) {
    const names = sessionCookieNames(c);
    if (names.length === 0) {
      if (c.record.cookies.length === 0) cookieProblems.push(`${label(c.record)}: the upload set no cookie`);
      else cookieUnknown++;
      continue;
    }
    const readable = names.filter((n) => !c.jar.get(n)!.httpOnly);
    if (readable.length > 0) cookieProblems.push(`${label(c.record)}: ${readable.join(', ')} not HttpOnly`);
  }
  checks.push({
    check: 'session cookie is HttpOnly',
    subject: 'all sessions',
    status: cookieProblems.length > 0 ? 'fail' : uploaded.length === 0 || cookieUnknown === uploaded.length ? 'skip' : 'pass',
    expected: 'each upload sets an HttpOnly session cookie',
    found:
      cookieProblems.length > 0
        ? cookieProblems.join('; ')
        : cookieUnknown > 0
          ? `${cookieUnknown} session cookie(s) not identified (value does not hold the id; pass the proxy's affinity cookie name)`
          : `${uploaded.length}/${uploaded.length} HttpOnly`,
  });

  // 2. Each client reads its own session: its marker, and nobody else's.
  const allMarkers = clients.map((c) => c.record);
  const reads = await Promise.all(
    uploaded.map(async (c) => ({ c, res: await readSession(base, input.sessionPath, c.jar, c.pool, timeoutMs) })),
  );
  const missingOwn: string[] = [];
  const seesOthers: string[] = [];
  for (const { c, res } of reads) {
    if (res.status !== 200) {
      missingOwn.push(`${label(c.record)}: ${res.error ?? `HTTP ${res.status}: ${snippet(res.text)}`}`);
      continue;
    }
    if (!res.text.includes(c.record.marker)) missingOwn.push(`${label(c.record)} (${c.record.sessionId}): own marker missing`);
    const foreign = allMarkers.filter((m) => m.client !== c.record.client && res.text.includes(m.marker));
    if (foreign.length > 0) {
      seesOthers.push(`${label(c.record)} (${c.record.sessionId}) sees data of ${foreign.map(label).join(', ')}`);
    }
  }
  checks.push({
    check: 'each session reads its own data',
    subject: 'all sessions',
    status: uploaded.length === k && missingOwn.length === 0 ? 'pass' : 'fail',
    expected: `${k}/${k} sessions return their own marker`,
    found: missingOwn.length === 0 ? `${reads.length}/${k} ok` : missingOwn.join('; '),
  });
  checks.push({
    check: "no session reads another's data",
    subject: 'all sessions',
    status: reads.length > 0 && seesOthers.length === 0 ? 'pass' : 'fail',
    expected: 'no session returns another client\'s marker',
    found: reads.length === 0 ? 'no session could be read' : seesOthers.length === 0 ? `${reads.length} sessions clean` : seesOthers.join('; '),
  });

  // 3. Forged ids: a newcomer who sends a real victim's id, in each place an app might look,
  //    on each upload path, must get a fresh session that cannot see the victim's data.
  const forgeries: ForgeryRecord[] = [];
  const victim = uploaded[0];
  if (!victim) {
    checks.push({
      check: 'forged session_id ignored',
      subject: 'all upload paths',
      status: 'fail',
      expected: 'a fresh session for an upload carrying another client\'s id',
      found: 'not checked: no upload succeeded, so there is no real id to forge',
    });
  } else {
    const victimId = victim.record.sessionId!;
    const attempts = input.uploadPaths.flatMap((path) => FORGERY_VECTORS.map((vector) => ({ path, vector })));
    const attackerMarkers: Array<{ marker: string; attempt: string }> = [];
    const results = await Promise.all(
      attempts.map(async ({ path, vector }) => {
        const jar = withoutSession(victim);
        const pool = newPool();
        const marker = `lockstep-check-${randomUUID()}`;
        attackerMarkers.push({ marker, attempt: `${path} (${vector})` });
        const up = await upload(base, path, input.uploadField, marker, jar, pool, timeoutMs, { vector, id: victimId });
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
          const read = await readSession(base, input.sessionPath, jar, pool, timeoutMs);
          record.sawVictimData = read.text.includes(victim.record.marker);
        }
        return record;
      }),
    );
    forgeries.push(...results);
    for (const f of results) {
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

    // A trusting app may also have written the forger's rows into the victim's session.
    const again = await readSession(base, input.sessionPath, victim.jar, victim.pool, timeoutMs);
    const intruders = attackerMarkers.filter((m) => again.text.includes(m.marker)).map((m) => m.attempt);
    const victimProblems: string[] = [];
    if (again.status !== 200) victimProblems.push(again.error ?? `HTTP ${again.status}: ${snippet(again.text)}`);
    else {
      if (!again.text.includes(victim.record.marker)) victimProblems.push('own marker missing');
      if (intruders.length > 0) victimProblems.push(`contains data from forged uploads to ${intruders.join(', ')}`);
    }
    checks.push({
      check: 'victim session untouched by forgeries',
      subject: `${label(victim.record)} (${victimId})`,
      status: victimProblems.length === 0 ? 'pass' : 'fail',
      expected: 'only its own marker',
      found: victimProblems.length === 0 ? 'only its own marker' : victimProblems.join('; '),
    });
  }

  // 4. Without the session cookie (affinity cookie kept where known), the data must stay hidden.
  const anonymous = await Promise.all([
    ...uploaded.map(async (c) => ({
      who: `${label(c.record)} without session cookie`,
      res: await readSession(base, input.sessionPath, withoutSession(c), c.pool, timeoutMs),
    })),
    (async () => ({ who: 'no cookies at all', res: await readSession(base, input.sessionPath, new CookieJar(), newPool(), timeoutMs) }))(),
  ]);
  const leaks: string[] = [];
  const statuses = new Map<string, number>();
  for (const { who, res } of anonymous) {
    const key = res.status === null ? `error ${res.error}` : `HTTP ${res.status}`;
    statuses.set(key, (statuses.get(key) ?? 0) + 1);
    // An unanswered request proves nothing either way, so it cannot count as refused.
    if (res.status === null) {
      leaks.push(`${who}: not checked (${res.error})`);
      continue;
    }
    if (res.status < 200 || res.status > 299) continue;
    const shown = allMarkers.filter((m) => res.text.includes(m.marker));
    if (shown.length > 0) leaks.push(`${who}: HTTP ${res.status} with data of ${shown.map(label).join(', ')}`);
  }
  checks.push({
    check: 'no session cookie, no data',
    subject: 'all sessions',
    status: leaks.length === 0 ? 'pass' : 'fail',
    expected: 'refused (non-2xx) or no session data',
    found: leaks.length === 0 ? `${anonymous.length} requests: ${[...statuses].map(([s, n]) => `${s} x${n}`).join(', ')}` : leaks.join('; '),
  });

  return {
    kind: 'isolation',
    ok: allPassed(checks),
    proxyUrl: base,
    checks,
    sessions: clients.map((c) => ({ ...c.record })),
    forgeries,
  };
}

/**
 * Build the isolation input from the inventory's `app.checks` section.
 * @param checks `inventory.app.checks`. @param proxyUrl where users reach the app.
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
