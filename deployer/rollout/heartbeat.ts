/**
 * Heartbeat lines during long waits (issue 11): while `work` is pending, one progress line every
 * HEARTBEAT_MS, e.g. `waiting for /healthz and /version, 12 s of 30`, so a person (or CI) watching
 * a deploy always sees it is alive and how long it may still take.
 */

/** Time between two heartbeat lines, ms (at most 5 s, as issue 11 asks). */
export const HEARTBEAT_MS = 5000;

/**
 * Await `work`, printing `waiting for <what>, <n> s[ of <limit>]` through `progress` every
 * HEARTBEAT_MS while it runs.
 * @param limitMs the bound the wait has (the activation or drain timeout), ms; omitted: no "of".
 * @returns what `work` resolves to; rejects as it does.
 */
export async function withHeartbeat<T>(progress: (line: string) => void, what: string, work: Promise<T>, limitMs?: number, everyMs = HEARTBEAT_MS): Promise<T> {
  const started = Date.now();
  const timer = setInterval(() => {
    const s = Math.round((Date.now() - started) / 1000);
    progress(`waiting for ${what}, ${s} s${limitMs !== undefined ? ` of ${Math.round(limitMs / 1000)}` : ''}`);
  }, everyMs);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}
