/**
 * `lockstep drift`: is every instance what it should be? Compares each instance with the
 * expected release (the newest successful activation or rollback in the fleet's history, or one
 * named) and names every difference: another release, files changed/missing/added against the
 * manifest (hashed ON the host, nothing downloaded), a process serving another digest or none,
 * a `current` that is not a complete release, a rollback target missing, hashed assets missing
 * from the asset store, a config fingerprint or session store differing (fingerprint.ts), and the proxy's
 * upstreams or states differing from the inventory. Read-only: it never changes an instance.
 * This file owns the fleet-wide scan (scanDrift): reading every instance, deciding the expected
 * release and the trusted manifests, and assembling the report; one instance is compared in
 * compare.ts, the manifest trust rule is trust.ts, the report's types are types.ts, its text render.ts.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, LockstepError } from '../../config/errors.ts';
import { openFleet, reasonOf } from '../fleet/fleet.ts';
import { parseHistory, parseLockHolder, releaseIdFromLink } from '../fleet/instance.ts';
import { driftVerdict } from './verdict.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { Manifest } from '../build/manifest.ts';
import { proxyClientFromInventory, type ProxyAdminClient, type ProxyInstanceStatus } from '../balancer/admin-client.ts';
import { artifactsDir, loadLocalRelease } from '../build/release-source.ts';
import { decideRollbackTarget, mergedHistory, type InstanceReleases } from '../fleet/releases.ts';
import * as cmd from '../remote/commands.ts';
import { RELEASE_ID } from '../remote/layout.ts';
import { parseCurrentLink, parseTreeDigest, splitSections } from '../remote/parse.ts';
import { checkInstance, type Basics } from './compare.ts';
import { addStaleLockItems, liveLockHeld } from './stale-lock.ts';
import { addConfigDriftItems } from './fingerprint.ts';
import { localRelease, manifestFileSha, manifestIsConsistent, readReleaseManifest } from './trust.ts';
import type { DriftItem, DriftOptions, DriftReport, DriftScan, ExpectedRelease, InstanceDrift } from './types.ts';

/**
 * Scan the fleet for drift (read-only). Instances are checked in parallel (deploy.concurrency);
 * every file of the active release is hashed on its host with `hashTree`.
 * @returns the report plus the trusted manifests a repair needs.
 * @throws ConfigError when no expected release is given and the history has none (exit 2), or
 *   `--release` names nothing known locally, in the history, or on any instance; LockstepError
 *   LOCKSTEP_UNREACHABLE (exit 3) when the expected release cannot be told because instances
 *   that could not be read are the only ones that might know it.
 */
export async function scanDrift(inventory: Inventory, options: DriftOptions = {}): Promise<DriftScan> {
  const started = Date.now();
  const fleet = openFleet(inventory, { factory: options.factory });
  let proxyClient: ProxyAdminClient | null = null;
  let proxyClientError: string | undefined;
  if (options.proxyClient !== undefined) proxyClient = options.proxyClient;
  else if (inventory.proxy) {
    try {
      proxyClient = proxyClientFromInventory(inventory, process.env, { timeoutMs: 3000 });
    } catch (e) {
      // No usable admin token here: the proxy cannot be checked, the instances still can.
      proxyClientError = (e as Error).message;
    }
  }
  try {
    const proxyRead: Promise<{ list: ProxyInstanceStatus[] | null; error: string | undefined }> = proxyClient
      ? proxyClient.listInstances().then(
          (list) => ({ list, error: undefined }),
          (e: Error) => ({ list: null, error: e.message }),
        )
      : Promise.resolve({ list: null, error: proxyClientError });
    const basics = await fleet.each(async (o): Promise<Basics> => {
      const http = Promise.all([o.readVersion(), o.isHealthy()]);
      await o.transport.connect();
      const sections = splitSections(await o.run(cmd.inspectForDrift(o.layout)));
      const link = parseCurrentLink(sections.get('current') ?? '');
      const info: InstanceReleases = {
        instance: o.name,
        current: link.kind === 'link' ? releaseIdFromLink(link.target!) : null,
        present: (sections.get('releases') ?? '').split('\n').filter(Boolean).sort(),
        history: parseHistory(sections.get('history') ?? ''),
      };
      const tree = sections.has('tree') ? parseTreeDigest(sections.get('tree')!) : null;
      const [version, healthy] = await http;
      return { link, info, lock: parseLockHolder(sections.get('lock') ?? ''), tree, version, healthy };
    });
    const reachable = basics.filter((r): r is PromiseFulfilledResult<Basics> => r.status === 'fulfilled').map((r) => r.value);
    const infos = reachable.map((b) => b.info);
    const history = mergedHistory(infos);

    // The expected release and a manifest for it we can trust (its file list hashes to the digest).
    let expected: ExpectedRelease;
    let local: { manifest: Manifest; artifact: string | null } | null = null;
    if (options.release) {
      const ref = options.release;
      if (RELEASE_ID.test(ref) && !existsSync(resolve(artifactsDir(inventory), `${ref}.manifest.json`))) {
        // Not built here (e.g. cron on another machine): the history or an instance knows it.
        const h = history.find((x) => x.release === ref && x.event !== 'lock-broken');
        let digest = h?.digest;
        if (!digest) {
          for (const o of fleet.ops.filter((_, i) => basics[i]!.status === 'fulfilled')) {
            const m = await readReleaseManifest(o, ref);
            if (manifestIsConsistent(m, ref)) {
              digest = m.digest;
              break;
            }
          }
        }
        if (!digest) throw new ConfigError(`release ${ref} is not built here (${artifactsDir(inventory)}), not in the fleet's history and on no instance`);
        expected = { release: ref, digest, from: 'option' };
      } else {
        const l = loadLocalRelease(inventory, ref);
        local = { manifest: l.manifest, artifact: l.artifact };
        expected = { release: l.manifest.release, digest: l.manifest.digest, from: 'option' };
      }
    } else {
      const last = history.find((h) => h.event === 'activate' || h.event === 'rollback');
      if (!last) {
        const unread = basics.flatMap((b, i) => (b.status === 'rejected' ? [`${fleet.ops[i]!.name} (${reasonOf(b)})`] : []));
        if (unread.length > 0) {
          throw new LockstepError('LOCKSTEP_UNREACHABLE', `cannot tell which release the fleet should run: the readable instances have no recorded activation and ${unread.join(', ')} could not be read; pass --release`, 3);
        }
        throw new ConfigError('nothing to compare with: no instance has a recorded activation (deploy first, or pass --release)');
      }
      expected = { release: last.release, digest: last.digest, from: 'history' };
    }
    local ??= localRelease(inventory, expected.release, expected.digest);
    const trusted = async (id: string, digest: string | null): Promise<Manifest | null> => {
      for (const o of fleet.ops.filter((_, i) => basics[i]!.status === 'fulfilled')) {
        const m = await readReleaseManifest(o, id);
        if (manifestIsConsistent(m, id) && (digest === null || m.digest === digest)) return m;
      }
      return null;
    };
    const manifest = local?.manifest ?? (await trusted(expected.release, expected.digest));

    // The one rule (fleet/releases.ts); drift checks the release that should be restorable everywhere.
    const rollbackTarget = decideRollbackTarget(infos, expected.release).intended;
    const rollbackDigest = rollbackTarget ? (history.find((h) => h.release === rollbackTarget && h.event !== 'lock-broken')?.digest ?? null) : null;
    const rollbackLocal = rollbackTarget && rollbackDigest ? localRelease(inventory, rollbackTarget, rollbackDigest) : null;
    const rollbackManifest = rollbackTarget ? (rollbackLocal?.manifest ?? (await trusted(rollbackTarget, rollbackDigest))) : null;

    const proxy = await proxyRead;
    // Only a live lock excuses proxy states (a stale one is drift of its own, stale-lock.ts), and
    // not the caller's own (a repair's rescan under its lock).
    const lockHeld = liveLockHeld(reachable.map((b) => b.lock).filter((l) => !options.ownLockId || l?.id !== options.ownLockId), inventory.deploy.lock_ttl_ms);
    const ctx = {
      expected,
      manifest,
      rollbackTarget,
      rollbackDigest,
      manifestSha: manifest ? manifestFileSha(manifest) : null,
      rollbackManifestSha: rollbackManifest ? manifestFileSha(rollbackManifest) : null,
      rollbackManifest,
      proxy: proxy.list,
      lockHeld,
    };
    const checked = await fleet.each((o) => {
      const i = fleet.ops.indexOf(o);
      const b = basics[i]!;
      if (b.status === 'rejected') throw b.reason;
      return checkInstance(o, b.value, ctx);
    });
    const all: InstanceDrift[] = checked.map((r, i) =>
      r.status === 'fulfilled'
        ? r.value
        : {
            instance: fleet.ops[i]!.name,
            status: 'unchecked',
            error: reasonOf(r),
            current: { target: null, release: null, digest: null },
            running: null,
            healthy: false,
            proxy: proxy.list?.find((p) => p.name === fleet.ops[i]!.name) ?? null,
            lock: null,
            items: [],
          },
    );
    const instances = options.instances ? all.filter((d) => options.instances!.includes(d.instance)) : all;
    addStaleLockItems(instances, inventory.deploy.lock_ttl_ms);
    const configFingerprint = addConfigDriftItems(instances, inventory.app.session_store);
    const fleetItems: DriftItem[] = [];
    if (proxy.list) {
      const names = new Set(inventory.instances.map((i) => i.name));
      for (const p of proxy.list.filter((x) => !names.has(x.name))) {
        fleetItems.push({ kind: 'proxy-extra', message: `the proxy balances over ${p.name} (${p.url}), which the inventory does not list`, detail: { name: p.name, url: p.url, state: p.state } });
      }
    }
    const proxyStatus: DriftReport['proxy'] = proxy.list ? { status: 'ok' } : proxy.error ? { status: 'unchecked', error: proxy.error } : { status: 'none' };
    const unchecked = instances.some((i) => i.status === 'unchecked') || proxyStatus.status === 'unchecked';
    const drifted = instances.some((i) => i.status === 'drift') || fleetItems.length > 0;
    const report: DriftReport = {
      expected,
      rollbackTarget,
      instances,
      fleet: fleetItems,
      proxy: proxyStatus,
      lockHeld,
      configFingerprint,
      exitCode: unchecked ? 3 : drifted ? 1 : 0,
      durationMs: Date.now() - started,
    };
    report.verdict = driftVerdict(report, inventory.deploy.lock_ttl_ms);
    return { report, manifest, localArtifact: local?.artifact ?? null, rollbackManifest, rollbackArtifact: rollbackLocal?.artifact ?? null };
  } finally {
    await fleet.close();
  }
}
