/**
 * `lockstep verify` (also the last step of every deploy and rollback): version parity and
 * session isolation for the fleet in an inventory.
 */
import { checkSessionIsolation, checkVersionParity, isolationInputFromInventory, overallOk, type CheckReport } from './index.ts';
import { ConfigError } from '../../config/errors.ts';
import { openFleet, type TransportFactory } from '../fleet/fleet.ts';
import type { Inventory } from '../../config/inventory.ts';
import { mergedHistory, readFleetReleases } from '../fleet/releases.ts';

export interface VerifyOptions {
  /** Expected release; default: the newest successful activation or rollback in the fleet's history. */
  expected?: { release: string; digest: string };
  /** Where users reach the app; default: the inventory's proxy listen address. */
  proxyUrl?: string;
  factory?: TransportFactory;
  /** Skip the session isolation checks (parity only). */
  parityOnly?: boolean;
}

export interface VerifyResult {
  ok: boolean;
  expected: { release: string; digest: string };
  reports: CheckReport[];
}

/** The URL users reach the app through, from the inventory's proxy section (undefined without one). */
export function proxyUrlOf(inventory: Inventory): string | undefined {
  return inventory.proxy ? `http://${inventory.proxy.listen}` : undefined;
}

/**
 * Run the post-deploy checks.
 * @throws ConfigError when no expected release is given and none can be found in the history.
 */
export async function verifyFleet(inventory: Inventory, options: VerifyOptions = {}): Promise<VerifyResult> {
  const fleet = openFleet(inventory, { factory: options.factory });
  try {
    let expected = options.expected;
    if (!expected) {
      const { infos } = await readFleetReleases(fleet);
      const last = mergedHistory(infos).find((h) => h.event === 'activate' || h.event === 'rollback');
      if (!last) throw new ConfigError('nothing to verify: no instance has a recorded activation (deploy first, or pass --release)');
      expected = { release: last.release, digest: last.digest };
    }
    const proxyUrl = options.proxyUrl ?? proxyUrlOf(inventory);
    const byName = new Map(fleet.ops.map((o) => [o.name, o]));
    const reports: CheckReport[] = [];
    reports.push(
      await checkVersionParity({
        instances: inventory.instances,
        expected,
        proxyUrl,
        versionPath: inventory.app.version_path,
        sessionStore: inventory.app.session_store,
        readCurrentManifest: (i) => byName.get(i.name)!.readCurrentManifest(),
      }),
    );
    if (!options.parityOnly && proxyUrl) {
      reports.push(await checkSessionIsolation(isolationInputFromInventory(inventory.app.checks, proxyUrl, { affinityCookie: 'lockstep_affinity' })));
    }
    return { ok: overallOk(reports), expected, reports };
  } finally {
    await fleet.close();
  }
}
