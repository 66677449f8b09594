/**
 * Configuration drift across the fleet, from what each running process reports on the version
 * path: `config_fingerprint` (sha256 of its effective configuration and secrets; the app never
 * reports a value, app/server/fingerprint.ts) and `session_store` ("local" | "redis").
 * - `config-fingerprint`: an instance whose fingerprint differs from the others'. The fleet's
 *   fingerprint is the one most instances report; with no strict majority every instance that
 *   reports one is named.
 * - `session-store`: an instance running another session store than `app.session_store`.
 * Instances whose process reports neither (down, or a release from before the fingerprint) are
 * left out. Pure: reads rows, adds items.
 */
import type { DriftItem, InstanceDrift } from './types.ts';

/** The first 19 characters of a fingerprint (`sha256:` and 12 hex), for messages. */
export function shortFingerprint(fp: string): string {
  return fp.slice(0, 19);
}

/**
 * Add `config-fingerprint` and `session-store` items to `rows` (status becomes `drift`).
 * @param rows the scan's instance rows, with `running` as read from the version path.
 * @param expectedStore the inventory's `app.session_store`.
 * @returns the fleet's fingerprint (the strict majority), or null when there is none.
 */
export function addConfigDriftItems(rows: InstanceDrift[], expectedStore: 'local' | 'redis'): string | null {
  const add = (row: InstanceDrift, item: DriftItem): void => {
    row.items.push(item);
    row.status = 'drift';
  };
  for (const row of rows) {
    const store = row.running?.session_store;
    if (store && store !== expectedStore) {
      add(row, {
        kind: 'session-store',
        message: `the process keeps sessions in "${store}", the inventory says app.session_store: ${expectedStore} (restart it with the inventory's environment: lockstep deploy)`,
        detail: { running: store, expected: expectedStore },
      });
    }
  }
  const reporting = rows.filter((r) => r.status !== 'unchecked' && r.running?.config_fingerprint);
  const counts = new Map<string, number>();
  for (const r of reporting) counts.set(r.running!.config_fingerprint!, (counts.get(r.running!.config_fingerprint!) ?? 0) + 1);
  if (counts.size === 0) return null;
  const ranked = [...counts].sort((x, y) => y[1] - x[1]);
  const majority = ranked.length === 1 || ranked[0]![1] > ranked[1]![1] ? ranked[0]![0] : null;
  if (counts.size === 1) return majority;
  const fleetText = [...counts].map(([fp, n]) => `${shortFingerprint(fp)} x${n}`).join(', ');
  for (const r of reporting) {
    const fp = r.running!.config_fingerprint!;
    if (fp === majority) continue;
    add(r, {
      kind: 'config-fingerprint',
      message:
        majority === null
          ? `config fingerprint ${shortFingerprint(fp)}: the instances disagree with no majority (${fleetText}): their configuration or secrets (env, session secret, store URL) differ`
          : `config fingerprint ${shortFingerprint(fp)} differs from the other instances' ${shortFingerprint(majority)} (${fleetText}): its configuration or secrets (env, session secret, store URL) differ`,
      detail: { fingerprint: fp, fleet: majority, counts: Object.fromEntries(counts) },
    });
  }
  return majority;
}
