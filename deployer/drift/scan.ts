/**
 * `lockstep drift`: is every instance what it should be? Compares each instance with the
 * expected release (the newest successful activation or rollback in the fleet's history, or one
 * named) and names every difference: another release, files changed/missing/added against the
 * manifest (hashed ON the host, nothing downloaded), a process serving another digest or none,
 * a `current` that is not a complete release, a rollback target missing, and the proxy's
 * upstreams or states differing from the inventory. Read-only: it never changes an instance.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { computeDigest } from '../build/digest.ts';
import { ConfigError, LockstepError } from '../../config/errors.ts';
import { openFleet, reasonOf, type TransportFactory } from '../fleet/fleet.ts';
import type { InstanceOps, VersionInfo } from '../fleet/instance.ts';
import { parseHistory, parseLockHolder, releaseIdFromLink } from '../fleet/instance.ts';
import type { Inventory } from '../../config/inventory.ts';
import type { Manifest } from '../build/manifest.ts';
import { proxyClientFromInventory, type ProxyAdminClient, type ProxyInstanceStatus } from '../balancer/admin-client.ts';
import { artifactsDir, loadLocalRelease } from '../build/release-source.ts';
import { decideRollbackTarget, mergedHistory, type InstanceReleases } from '../fleet/releases.ts';
import * as cmd from '../remote/commands.ts';
import { RELEASE_ID, releaseDir } from '../remote/layout.ts';
import { isCleanDiff, parseCurrentLink, parseTreeDigest, splitSections, type CurrentLink, type TreeDiff } from '../remote/parse.ts';

export type DriftKind =
  /** `current` does not exist. */
  | 'no-current'
  /** `current` is not a link to a complete release (missing dir, bad manifest, staging dir...). */
  | 'incomplete-current'
  /** `current` is a complete release, but not the expected one (by id or digest). */
  | 'different-release'
  /** Files of the active release differ from its manifest. */
  | 'files'
  /** Nothing answers the app's version path. */
  | 'process-down'
  /** The process answers /version but its health path is not 200. */
  | 'process-unhealthy'
  /** The process serves a digest other than the one `current` holds on disk. */
  | 'process-digest'
  /** The fleet's rollback target is absent (or its manifest is wrong) on this instance. */
  | 'rollback-target'
  /** The proxy has no upstream for this instance. */
  | 'proxy-missing'
  /** The proxy's upstream URL for this instance differs from the inventory's. */
  | 'proxy-url'
  /** The proxy has the instance draining or disabled while no deploy holds the lock. */
  | 'proxy-state'
  /** The proxy balances over an upstream the inventory does not list. */
  | 'proxy-extra';

/** One named difference. `detail` carries the machine-readable facts (paths, digests, pids). */
export interface DriftItem {
  kind: DriftKind;
  message: string;
  detail?: Record<string, unknown>;
}

export interface InstanceDrift {
  instance: string;
  /** `unchecked`: the instance could not be reached or read (see `error`). */
  status: 'ok' | 'drift' | 'unchecked';
  error?: string;
  /** Where `current` points and the release/digest its manifest holds (null when incomplete). */
  current: { target: string | null; release: string | null; digest: string | null };
  /** What the running process reports on the version path (null: nothing answered). */
  running: { release: string | null; digest: string | null; pid: number | null } | null;
  healthy: boolean;
  /** The proxy's view of the instance (null: no proxy, proxy unreachable, or not in the proxy). */
  proxy: ProxyInstanceStatus | null;
  /** Deploy lock holder on this instance (token removed), or null. */
  lock: Record<string, unknown> | null;
  items: DriftItem[];
}

export interface ExpectedRelease {
  release: string;
  digest: string;
  /** `history`: newest activation/rollback in the merged history; `option`: named by the caller. */
  from: 'history' | 'option';
}

export interface DriftReport {
  expected: ExpectedRelease;
  /** Release a `lockstep rollback` should go to (newest earlier success not rolled back from), or null. */
  rollbackTarget: string | null;
  instances: InstanceDrift[];
  /** Proxy-level items (upstreams the inventory does not list). */
  fleet: DriftItem[];
  /** `ok`, `none` (no proxy in the inventory) or why the admin API could not be read. */
  proxy: { status: 'ok' | 'none' | 'unchecked'; error?: string };
  /** True when some instance holds the deploy lock (a deploy may be in progress). */
  lockHeld: boolean;
  /** 0 no drift, 1 drift found, 3 an instance (or the proxy) could not be checked. */
  exitCode: 0 | 1 | 3;
  durationMs: number;
}

/** What a drift scan found plus what a repair needs: the trusted manifest of the expected release. */
export interface DriftScan {
  report: DriftReport;
  /** Manifest of the expected release whose file list hashes to the expected digest, or null. */
  manifest: Manifest | null;
  /** Local artifact file for that manifest (dist/artifacts), when present. */
  localArtifact: string | null;
  /** Manifest of the rollback target (same trust rule), or null. */
  rollbackManifest: Manifest | null;
  rollbackArtifact: string | null;
}

export interface DriftOptions {
  /** Expected release: an id, `latest`, or a manifest path. Default: from the history. */
  release?: string;
  factory?: TransportFactory;
  /** Proxy admin client; default from the inventory; null to skip the proxy checks. */
  proxyClient?: ProxyAdminClient | null;
  /** The `id` of a lock the caller holds (a repair's rescan): that lock is not "a deploy in progress". */
  ownLockId?: string;
}

/** Paths listed in a human line before "... and N more". */
const LIST_LIMIT = 5;

function short(digest: string | null | undefined): string {
  return digest ? digest.slice(0, 12) : 'none';
}

function listPaths(paths: string[]): string {
  const head = paths.slice(0, LIST_LIMIT).join(', ');
  return paths.length > LIST_LIMIT ? `${head} ... and ${paths.length - LIST_LIMIT} more` : head;
}

/** True when a manifest's own file list hashes to its digest and it names release `id` (when given). */
export function manifestIsConsistent(m: unknown, id?: string): m is Manifest {
  const man = m as Manifest;
  if (!man || typeof man !== 'object' || !Array.isArray(man.files) || typeof man.digest !== 'string') return false;
  if (id !== undefined && man.release !== id) return false;
  try {
    return computeDigest(man.files) === man.digest;
  } catch {
    return false;
  }
}

/** sha256 of a manifest.json as a deploy writes it into a release dir (see InstanceOps.unpackRelease). */
export function manifestFileSha(m: Manifest): string {
  return createHash('sha256').update(JSON.stringify(m, null, 2) + '\n').digest('hex');
}

/** A local manifest+artifact for `id` in dist/artifacts whose digest matches, or null. */
function localRelease(inventory: Inventory, id: string, digest: string): { manifest: Manifest; artifact: string | null } | null {
  const file = resolve(artifactsDir(inventory), `${id}.manifest.json`);
  if (!existsSync(file)) return null;
  try {
    const m = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (!manifestIsConsistent(m, id) || m.digest !== digest) return null;
    const artifact = resolve(file, '..', m.artifact.file);
    return { manifest: m, artifact: existsSync(artifact) ? artifact : null };
  } catch {
    return null;
  }
}

/** Read releases/<id>/manifest.json on one instance; null when missing or not valid JSON. */
async function readReleaseManifest(o: InstanceOps, id: string): Promise<unknown> {
  try {
    return JSON.parse(await o.transport.readFile(`${releaseDir(o.layout, id)}/manifest.json`)) as unknown;
  } catch {
    return null;
  }
}

interface Basics {
  link: CurrentLink;
  info: InstanceReleases;
  lock: Record<string, unknown> | null;
  /** Tree digest and manifest.json hash of what `current` resolves to (null when it is no directory). */
  tree: { tree: string; manifestSha: string | null } | null;
  version: VersionInfo | null;
  healthy: boolean;
}

/** Classify `current` from its description; @returns the release id or a drift item. */
function classifyCurrent(o: InstanceOps, link: CurrentLink): { id: string } | DriftItem {
  const where = o.layout.current;
  if (link.kind === 'none') return { kind: 'no-current', message: `${where} does not exist: no release is active` };
  if (link.kind === 'notlink') {
    return {
      kind: 'incomplete-current',
      message: `${where} is a real ${link.dir ? 'directory' : 'file'}, not a link to releases/<id>`,
      detail: { target: null, reason: 'not-a-link' },
    };
  }
  const target = link.target!;
  const id = releaseIdFromLink(target);
  const inReleases = id !== null && (target.replace(/\/$/, '') === `releases/${id}` || target.replace(/\/$/, '') === `${o.layout.releases}/${id}`);
  const incomplete = (reason: string, message: string): DriftItem => ({ kind: 'incomplete-current', message: `current -> ${target}: ${message}`, detail: { target, reason } });
  if (id?.startsWith('.staging-')) return incomplete('staging', 'a staging directory (an unpack in progress or interrupted), not a release');
  if (!inReleases || !RELEASE_ID.test(id)) return incomplete('not-a-release', `not a release directory under ${o.layout.releases}`);
  if (!link.dir) return incomplete('missing-dir', `releases/${id} does not exist (deleted?)`);
  if (!link.manifest) return incomplete('missing-manifest', `releases/${id} has no manifest.json (not a complete release)`);
  return { id };
}

async function checkInstance(
  o: InstanceOps,
  b: Basics,
  ctx: {
    expected: ExpectedRelease;
    manifest: Manifest | null;
    rollbackTarget: string | null;
    rollbackDigest: string | null;
    /** sha256 of manifest.json as a deploy writes it, for the expected release and the rollback target. */
    manifestSha: string | null;
    rollbackManifestSha: string | null;
    proxy: ProxyInstanceStatus[] | null;
    lockHeld: boolean;
  },
): Promise<InstanceDrift> {
  const { expected } = ctx;
  const row: InstanceDrift = {
    instance: o.name,
    status: 'ok',
    current: { target: b.link.target, release: null, digest: null },
    running: b.version ? { release: b.version.release ?? null, digest: b.version.digest ?? null, pid: b.version.pid ?? null } : null,
    healthy: b.healthy,
    proxy: null,
    lock: b.lock,
    items: [],
  };
  const items = row.items;

  // What `current` is, and whether its files match.
  const cur = classifyCurrent(o, b.link);
  if ('kind' in cur) items.push(cur);
  else {
    const dir = releaseDir(o.layout, cur.id);
    // Fast path: the tree's digest and manifest.json's hash, computed on the host (two short lines).
    const quick = b.tree ?? parseTreeDigest(await o.run(cmd.treeDigest(dir)));
    const raw = ctx.manifest && quick.manifestSha === ctx.manifestSha ? ctx.manifest : await readReleaseManifest(o, cur.id);
    if (raw === null) {
      items.push({ kind: 'incomplete-current', message: `current -> releases/${cur.id}: manifest.json is not valid JSON`, detail: { target: b.link.target, reason: 'invalid-manifest' } });
    } else if (!manifestIsConsistent(raw, cur.id)) {
      const named = (raw as { release?: unknown }).release;
      items.push({
        kind: 'incomplete-current',
        message:
          named !== cur.id
            ? `current -> releases/${cur.id}: its manifest.json names release ${String(named)}`
            : `current -> releases/${cur.id}: manifest.json's digest does not match its own file list (edited by hand?)`,
        detail: { target: b.link.target, reason: 'invalid-manifest' },
      });
    } else {
      const onDisk = raw;
      row.current.release = cur.id;
      row.current.digest = onDisk.digest;
      if (cur.id !== expected.release || onDisk.digest !== expected.digest) {
        const expectedPresent = b.info.present.includes(expected.release);
        items.push({
          kind: 'different-release',
          message: `current is ${cur.id} (digest ${short(onDisk.digest)}), expected ${expected.release} (digest ${short(expected.digest)}); releases/${expected.release} is ${expectedPresent ? 'present' : 'absent'}`,
          detail: { release: cur.id, digest: onDisk.digest, expected_release: expected.release, expected_digest: expected.digest, expected_present: expectedPresent },
        });
      }
      // The expected release is judged against the trusted manifest (a hand-edited manifest.json
      // on the host cannot hide an edited file); any other release against its own manifest.
      const reference = onDisk.digest === expected.digest && ctx.manifest ? ctx.manifest : onDisk;
      // Only a tree that does not hash to the digest is listed file by file, to name the files.
      const diff: TreeDiff = quick.tree === reference.digest ? { missing: [], changed: [], added: [] } : await o.verifyTree(dir, reference);
      if (!isCleanDiff(diff)) {
        const parts = [
          diff.changed.length ? `changed ${listPaths(diff.changed.map((c) => (c.what === 'content' ? c.path : `${c.path} (${c.what} ${c.expected} -> ${c.actual})`)))}` : '',
          diff.missing.length ? `missing ${listPaths(diff.missing)}` : '',
          diff.added.length ? `added ${listPaths(diff.added)}` : '',
        ].filter(Boolean);
        items.push({
          kind: 'files',
          message: `releases/${cur.id} differs from its manifest: ${parts.join('; ')}`,
          detail: { release: cur.id, changed: diff.changed, missing: diff.missing, added: diff.added },
        });
      }
    }
  }

  // What runs.
  const diskDigest = row.current.digest;
  if (!row.running) {
    items.push({ kind: 'process-down', message: `no process answers ${o.instance.url}${o.inventory.app.version_path}` });
  } else {
    const wanted = diskDigest ?? expected.digest;
    if (row.running.digest !== wanted) {
      items.push({
        kind: 'process-digest',
        message:
          `the process on ${o.instance.url} (pid ${row.running.pid ?? '?'}) serves ${row.running.release ?? '?'} (digest ${short(row.running.digest)}), ` +
          `but ${diskDigest ? `current on disk is ${row.current.release} (digest ${short(diskDigest)})` : `the expected release is ${expected.release}`}`,
        detail: { running: row.running, disk_release: row.current.release, disk_digest: diskDigest },
      });
    }
    if (!b.healthy) items.push({ kind: 'process-unhealthy', message: `${o.instance.url}${o.inventory.app.health_path} does not answer 200` });
  }

  // The rollback target must be on every instance, or a rollback would refuse.
  if (ctx.rollbackTarget) {
    const t = ctx.rollbackTarget;
    if (!b.info.present.includes(t)) {
      items.push({ kind: 'rollback-target', message: `rollback target ${t} is absent (releases/${t} missing): \`lockstep rollback\` would refuse`, detail: { release: t, reason: 'absent' } });
    } else if (!ctx.rollbackManifestSha || (await o.run(cmd.manifestHash(releaseDir(o.layout, t)))).trim() !== ctx.rollbackManifestSha) {
      const m = await readReleaseManifest(o, t);
      if (!manifestIsConsistent(m, t) || (ctx.rollbackDigest && m.digest !== ctx.rollbackDigest)) {
        items.push({ kind: 'rollback-target', message: `rollback target releases/${t} has a missing or wrong manifest.json`, detail: { release: t, reason: 'manifest' } });
      }
    }
  }

  // The proxy's view.
  if (ctx.proxy) {
    const p = ctx.proxy.find((x) => x.name === o.name) ?? null;
    row.proxy = p;
    if (!p) items.push({ kind: 'proxy-missing', message: 'the proxy has no upstream for this instance (reload the proxy: SIGHUP to `lockstep proxy`)' });
    else {
      if (p.url.replace(/\/+$/, '') !== o.instance.url.replace(/\/+$/, '')) {
        items.push({ kind: 'proxy-url', message: `the proxy sends its traffic to ${p.url}, the inventory says ${o.instance.url}`, detail: { proxy_url: p.url, inventory_url: o.instance.url } });
      }
      if (p.state !== 'enabled' && !ctx.lockHeld) {
        items.push({ kind: 'proxy-state', message: `the proxy has it ${p.state} while no deploy holds the lock: it gets no new traffic`, detail: { state: p.state, inflight: p.inflight } });
      }
    }
  }
  row.status = items.length ? 'drift' : 'ok';
  return row;
}

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
    const lockHeld = reachable.some((b) => b.lock !== null && (!options.ownLockId || b.lock.id !== options.ownLockId));
    const ctx = {
      expected,
      manifest,
      rollbackTarget,
      rollbackDigest,
      manifestSha: manifest ? manifestFileSha(manifest) : null,
      rollbackManifestSha: rollbackManifest ? manifestFileSha(rollbackManifest) : null,
      proxy: proxy.list,
      lockHeld,
    };
    const checked = await fleet.each((o) => {
      const i = fleet.ops.indexOf(o);
      const b = basics[i]!;
      if (b.status === 'rejected') throw b.reason;
      return checkInstance(o, b.value, ctx);
    });
    const instances: InstanceDrift[] = checked.map((r, i) =>
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
      exitCode: unchecked ? 3 : drifted ? 1 : 0,
      durationMs: Date.now() - started,
    };
    return { report, manifest, localArtifact: local?.artifact ?? null, rollbackManifest, rollbackArtifact: rollbackLocal?.artifact ?? null };
  } finally {
    await fleet.close();
  }
}

/**
 * Human text of a drift report: a headline with the expected release, one block per instance
 * naming each drifted item, the proxy's own items, and a one-line summary.
 */
export function renderDriftText(r: DriftReport): string {
  const lines: string[] = [
    `expected ${r.expected.release} (digest ${short(r.expected.digest)}, ${r.expected.from === 'history' ? 'newest activation in the history' : 'named'})` +
      (r.rollbackTarget ? `; rollback target ${r.rollbackTarget}` : ''),
  ];
  if (r.lockHeld) lines.push('NOTE: a deploy holds the lock on some instance: a rollout may be in progress');
  for (const i of r.instances) {
    if (i.status === 'unchecked') lines.push(`${i.instance}: NOT CHECKED: ${i.error}`);
    else if (i.status === 'ok') lines.push(`${i.instance}: ok`);
    else {
      lines.push(`${i.instance}: DRIFT (${i.items.length} item${i.items.length === 1 ? '' : 's'})`);
      for (const item of i.items) lines.push(`  - ${item.kind}: ${item.message}`);
    }
  }
  if (r.proxy.status === 'unchecked') lines.push(`proxy: NOT CHECKED: ${r.proxy.error}`);
  for (const item of r.fleet) lines.push(`proxy: DRIFT ${item.kind}: ${item.message}`);
  const count = (s: InstanceDrift['status']) => r.instances.filter((i) => i.status === s).length;
  lines.push(
    `${r.exitCode === 0 ? 'no drift' : r.exitCode === 1 ? 'DRIFT' : 'INCOMPLETE'}: instances ${count('ok')} ok, ${count('drift')} drifted, ${count('unchecked')} not checked` +
      `; proxy ${r.proxy.status === 'unchecked' ? 'NOT CHECKED' : r.fleet.length ? `${r.fleet.length} item(s) drifted` : 'ok'} (${r.durationMs} ms)`,
  );
  return lines.join('\n');
}
