/**
 * Version parity: every instance serves, and has on disk, the release we expect. Checked three
 * ways because each catches a different drift: `/version` read directly (a process still running
 * old code), through the proxy (the balancer sending users somewhere unexpected), and the
 * `current` manifest on disk (a switched link or a hand-edited manifest).
 */
import pLimit from 'p-limit';
import { verifyManifestDigest } from '../build/digest.ts';
import type { ManifestFile } from '../build/manifest.ts';
import { allPassed, type CheckResult } from './types.ts';
import { createClientPool, httpRequest, parseJson, snippet, type HttpOutcome } from './http.ts';

/** The part of an inventory instance the parity check needs (`Instance` satisfies it). */
export interface ParityInstance {
  name: string;
  /** Base URL of the app on the instance, e.g. http://127.0.0.11:4101 */
  url: string;
}

export interface ParityInput<I extends ParityInstance = ParityInstance> {
  instances: readonly I[];
  expected: { release: string; digest: string };
  /** Base URL users reach the app through, e.g. http://127.0.0.1:8080. Without it the proxy checks are skipped. */
  proxyUrl?: string;
  /** Inventory `app.version_path`. Default "/version". */
  versionPath?: string;
  /**
   * Read `<deployTo>/current/manifest.json` on the instance (through its transport's
   * `readFile`): the parsed object or its JSON text. May throw; the error message becomes the
   * failure detail.
   */
  readCurrentManifest: (instance: I) => Promise<unknown>;
  /** How many cookie-less requests to send through the proxy. Default 3 x instances. */
  requestsThroughProxy?: number;
  /**
   * The inventory's `app.session_store`: with it, one "session store" row per instance says which
   * store the process runs ("local" | "redis" from its `/version`). A process that does not report
   * it (an older release) is taken as "local".
   */
  sessionStore?: 'local' | 'redis';
  /** Per HTTP request, in ms. Default 5000. */
  timeoutMs?: number;
  /** Per `readCurrentManifest` call, in ms (an SSH read can stall). Default 15000. */
  manifestTimeoutMs?: number;
}

/** What `/version` said, as far as it could be read. */
export interface VersionAnswer {
  release?: string;
  digest?: string;
  instance?: string;
  pid?: number;
  /** "local" | "redis", when the app reports it. */
  sessionStore?: string;
  error?: string;
}

export interface ParityReport {
  kind: 'parity';
  ok: boolean;
  expected: { release: string; digest: string };
  checks: CheckResult[];
  /** Per instance: its `/version` answer read directly and its on-disk manifest. */
  instances: Array<{
    name: string;
    url: string;
    version: VersionAnswer;
    manifest: { release?: string; digest?: string; computedDigest?: string | null; error?: string };
  }>;
  /** Null when no proxy URL was given. `answeredBy` counts requests per `/version` `instance` field. */
  proxy: { url: string; requests: number; answeredBy: Record<string, number>; failed: number } | null;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_MANIFEST_TIMEOUT_MS = 15_000;
/** Bounded so a hung proxy costs at most a few timeouts in a row, not one per request. */
const PROXY_CONCURRENCY = 4;

function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}

/** Read one `/version` answer into data; every way it can be wrong becomes `error`. */
function readVersion(outcome: HttpOutcome): VersionAnswer {
  if (!outcome.ok) return { error: `no answer: ${outcome.error}` };
  if (outcome.status !== 200) return { error: `HTTP ${outcome.status}: ${snippet(outcome.text)}` };
  const body = parseJson(outcome.text);
  if (typeof body !== 'object' || body === null) return { error: `not a JSON object: ${snippet(outcome.text)}` };
  const b = body as Record<string, unknown>;
  return {
    release: typeof b.release === 'string' ? b.release : undefined,
    digest: typeof b.digest === 'string' ? b.digest : undefined,
    instance: typeof b.instance === 'string' ? b.instance : undefined,
    pid: typeof b.pid === 'number' ? b.pid : undefined,
    sessionStore: typeof b.session_store === 'string' ? b.session_store : undefined,
  };
}

function describeRelease(r: { release?: string; digest?: string }): string {
  return `release ${r.release ?? '(missing)'}, digest ${r.digest ?? '(missing)'}`;
}

function sameRelease(r: { release?: string; digest?: string }, expected: { release: string; digest: string }): boolean {
  return r.release === expected.release && r.digest === expected.digest;
}

/**
 * One "session store" row per instance: which store its process runs against the inventory's.
 * Not reported counts as "local" (releases from before the report only had the local store).
 */
function sessionStoreChecks(instances: readonly ParityInstance[], direct: VersionAnswer[], expected: 'local' | 'redis'): CheckResult[] {
  return instances.map((inst, i) => {
    const v = direct[i]!;
    if (v.error) return { check: 'session store', subject: inst.name, status: 'skip', expected, found: 'no /version answer (see above)' };
    const running = v.sessionStore ?? 'local';
    const shown = v.sessionStore === undefined ? 'local (not reported: an older release)' : running === 'redis' ? 'redis (shared by the fleet)' : 'local (this instance only)';
    return { check: 'session store', subject: inst.name, status: running === expected ? 'pass' : 'fail', expected: `${expected} (app.session_store)`, found: shown };
  });
}

/** "a x3, b x2", sorted by key so the text does not depend on which answer came first. */
function countsText(counts: Map<string, number>): string {
  return [...counts]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, n]) => `${k} x${n}`)
    .join(', ');
}

/**
 * Check version parity across the fleet.
 * @param input instances, the expected release and digest, the proxy URL and a manifest reader.
 * @returns a report with one `CheckResult` per instance and check, plus the raw answers.
 *   Network errors, bad JSON and unreadable manifests are failures in the report; this function
 *   does not throw for them (only for programming errors).
 */
export async function checkVersionParity<I extends ParityInstance>(input: ParityInput<I>): Promise<ParityReport> {
  const { instances, expected } = input;
  const versionPath = input.versionPath ?? '/version';
  const timeoutMs = input.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const pool = createClientPool(timeoutMs);
  try {
    const [direct, disk, viaProxy] = await Promise.all([
      Promise.all(
        instances.map(async (inst) =>
          readVersion(await httpRequest(joinUrl(inst.url, versionPath), { timeoutMs, dispatcher: pool })),
        ),
      ),
      Promise.all(
        instances.map((inst) => readManifest(input.readCurrentManifest, inst, input.manifestTimeoutMs ?? DEFAULT_MANIFEST_TIMEOUT_MS)),
      ),
      input.proxyUrl === undefined
        ? Promise.resolve(null)
        : askThroughProxy(
            joinUrl(input.proxyUrl, versionPath),
            input.requestsThroughProxy ?? 3 * instances.length,
            timeoutMs,
            pool,
          ),
    ]);

    const checks: CheckResult[] = [];
    const expectedText = describeRelease(expected);
    instances.forEach((inst, i) => {
      const v = direct[i]!;
      const problems: string[] = [];
      if (v.error) problems.push(v.error);
      else {
        if (!sameRelease(v, expected)) problems.push(describeRelease(v));
        // The name tells us the URL really reaches this instance, not a neighbour on a reused port.
        if (v.instance !== inst.name) problems.push(`answers as instance ${JSON.stringify(v.instance ?? null)}`);
      }
      checks.push({
        check: 'version (direct)',
        subject: inst.name,
        status: problems.length === 0 ? 'pass' : 'fail',
        expected: `${expectedText}, answering as ${inst.name}`,
        found: problems.length === 0 ? describeRelease(v) : `${problems.join('; ')} (${inst.url}${versionPath})`,
      });
    });

    if (input.sessionStore !== undefined) checks.push(...sessionStoreChecks(instances, direct, input.sessionStore));

    instances.forEach((inst, i) => {
      const m = disk[i]!;
      const ok = !m.error && sameRelease(m, expected);
      checks.push({
        check: 'manifest of current',
        subject: inst.name,
        status: ok ? 'pass' : 'fail',
        expected: expectedText,
        found: m.error ?? describeRelease(m),
      });
    });

    instances.forEach((inst, i) => {
      const m = disk[i]!;
      if (m.error) {
        checks.push({
          check: 'manifest file list',
          subject: inst.name,
          status: 'skip',
          expected: 'file list hashes to the declared digest',
          found: 'manifest unreadable (see above)',
        });
        return;
      }
      checks.push({
        check: 'manifest file list',
        subject: inst.name,
        status: m.verification!.ok ? 'pass' : 'fail',
        expected: 'file list hashes to the declared digest',
        found: m.verification!.ok ? `hashes to ${m.verification!.computed}` : m.verification!.reason,
      });
    });

    let proxy: ParityReport['proxy'] = null;
    if (viaProxy === null) {
      for (const check of ['version (proxy)', 'proxy reaches every instance']) {
        checks.push({ check, subject: 'proxy', status: 'skip', expected: 'a proxy URL', found: 'no proxy configured' });
      }
    } else {
      proxy = { url: input.proxyUrl!, requests: viaProxy.length, answeredBy: {}, failed: 0 };
      const wrong = new Map<string, number>();
      const answeredBy = new Map<string, number>();
      for (const v of viaProxy) {
        if (v.instance !== undefined) answeredBy.set(v.instance, (answeredBy.get(v.instance) ?? 0) + 1);
        if (v.error || !sameRelease(v, expected)) {
          proxy.failed++;
          const key = v.error ?? `${v.instance ?? 'unnamed instance'}: ${describeRelease(v)}`;
          wrong.set(key, (wrong.get(key) ?? 0) + 1);
        }
      }
      proxy.answeredBy = Object.fromEntries([...answeredBy].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      checks.push({
        check: 'version (proxy)',
        subject: 'proxy',
        status: proxy.failed === 0 ? 'pass' : 'fail',
        expected: `${viaProxy.length}/${viaProxy.length} answers with ${expectedText}`,
        found:
          proxy.failed === 0
            ? `${viaProxy.length}/${viaProxy.length} answers match`
            : `${proxy.failed}/${viaProxy.length} answers differ: ${countsText(wrong)}`,
      });
      const names = new Set(instances.map((i) => i.name));
      const missing = instances.filter((i) => !answeredBy.has(i.name)).map((i) => i.name);
      const strangers = [...answeredBy.keys()].filter((n) => !names.has(n));
      const problems: string[] = [];
      if (missing.length > 0) problems.push(`never answered: ${missing.join(', ')}`);
      if (strangers.length > 0) problems.push(`answers from instances not in the inventory: ${strangers.join(', ')}`);
      checks.push({
        check: 'proxy reaches every instance',
        subject: 'proxy',
        status: problems.length === 0 ? 'pass' : 'fail',
        expected: `answers from ${[...names].join(', ')}`,
        found: `${problems.length > 0 ? `${problems.join('; ')}; ` : ''}answered by ${countsText(answeredBy) || 'nobody'}`,
      });
    }

    return {
      kind: 'parity',
      ok: allPassed(checks),
      expected: { ...expected },
      checks,
      instances: instances.map((inst, i) => {
        const m = disk[i]!;
        return {
          name: inst.name,
          url: inst.url,
          version: direct[i]!,
          manifest: m.error
            ? { error: m.error }
            : { release: m.release, digest: m.digest, computedDigest: m.verification!.computed },
        };
      }),
      proxy,
    };
  } finally {
    await pool.close();
  }
}

type DiskManifest = {
  release?: string;
  digest?: string;
  error?: string;
  verification?: ReturnType<typeof verifyManifestDigest>;
};

async function readManifest<I extends ParityInstance>(
  read: (instance: I) => Promise<unknown>,
  instance: I,
  timeoutMs: number,
): Promise<DiskManifest> {
  let raw: unknown;
  let timer: NodeJS.Timeout | undefined;
  try {
    raw = await Promise.race([
      (async () => read(instance))(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (e) {
    return { error: `cannot read manifest of current: ${e instanceof Error ? e.message : String(e)}` };
  } finally {
    clearTimeout(timer);
  }
  if (typeof raw === 'string') raw = parseJson(raw) ?? raw;
  if (typeof raw !== 'object' || raw === null) return { error: `manifest of current is not a JSON object` };
  const m = raw as Record<string, unknown>;
  return {
    release: typeof m.release === 'string' ? m.release : undefined,
    digest: typeof m.digest === 'string' ? m.digest : undefined,
    verification: verifyManifestDigest({ digest: m.digest as string, files: m.files as ManifestFile[] }),
  };
}

async function askThroughProxy(url: string, count: number, timeoutMs: number, pool: ReturnType<typeof createClientPool>): Promise<VersionAnswer[]> {
  const limit = pLimit(PROXY_CONCURRENCY);
  // No cookies on purpose: without an affinity cookie the proxy balances, so repeated requests
  // should land on every instance.
  return Promise.all(
    Array.from({ length: Math.max(1, count) }, () =>
      limit(async () => readVersion(await httpRequest(url, { timeoutMs, dispatcher: pool }))),
    ),
  );
}
