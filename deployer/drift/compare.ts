/**
 * One instance against the expected release: what `current` is (classifyCurrent), whether the
 * active release's files match the trusted manifest, what process runs and whether it is
 * healthy, whether the fleet's rollback target is present, and how the proxy sees the instance
 * (checkInstance). Reads the instance, never changes it; the fleet-wide scan is in scan.ts.
 */
import type { InstanceOps, VersionInfo } from '../fleet/instance.ts';
import { releaseIdFromLink } from '../fleet/instance.ts';
import type { Manifest } from '../build/manifest.ts';
import type { ProxyInstanceStatus } from '../balancer/admin-client.ts';
import type { InstanceReleases } from '../fleet/releases.ts';
import * as cmd from '../remote/commands.ts';
import { RELEASE_ID, releaseDir } from '../remote/layout.ts';
import { isCleanDiff, parseTreeDigest, type CurrentLink, type TreeDiff } from '../remote/parse.ts';
import { manifestIsConsistent, readReleaseManifest } from './trust.ts';
import { assetStoreDrift } from './assets.ts';
import type { DriftItem, ExpectedRelease, InstanceDrift } from './types.ts';

/** Paths listed in a human line before "... and N more". */
const LIST_LIMIT = 5;

/** The first 12 characters of a digest, or `none`, for messages. */
export function short(digest: string | null | undefined): string {
  return digest ? digest.slice(0, 12) : 'none';
}

function listPaths(paths: string[]): string {
  const head = paths.slice(0, LIST_LIMIT).join(', ');
  return paths.length > LIST_LIMIT ? `${head} ... and ${paths.length - LIST_LIMIT} more` : head;
}

/** What one read of an instance found, before it is compared (see scan.ts, `inspectForDrift`). */
export interface Basics {
  link: CurrentLink;
  info: InstanceReleases;
  lock: Record<string, unknown> | null;
  /** Tree digest and manifest.json hash of what `current` resolves to (null when it is no directory). */
  tree: { tree: string; manifestSha: string | null } | null;
  version: VersionInfo | null;
  healthy: boolean;
}

/** Classify `current` from its description; @returns the release id or a drift item. */
export function classifyCurrent(o: InstanceOps, link: CurrentLink): { id: string } | DriftItem {
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

/**
 * Compare one instance with the expected release: `current`, the files of the active release
 * (against the trusted manifest when it is the expected release), the running process, the
 * rollback target and the proxy's view. Hashes files on the host only when the tree digest differs.
 * @returns the instance's row: `ok`, or `drift` with one item per difference.
 */
export async function checkInstance(
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
    /** Trusted manifest of the rollback target (for the asset store check). */
    rollbackManifest?: Manifest | null;
    proxy: ProxyInstanceStatus[] | null;
    lockHeld: boolean;
  },
): Promise<InstanceDrift> {
  const { expected } = ctx;
  const row: InstanceDrift = {
    instance: o.name,
    status: 'ok',
    current: { target: b.link.target, release: null, digest: null },
    running: b.version
      ? {
          release: b.version.release ?? null,
          digest: b.version.digest ?? null,
          pid: b.version.pid ?? null,
          session_store: typeof b.version.session_store === 'string' ? b.version.session_store : null,
          config_fingerprint: typeof b.version.config_fingerprint === 'string' ? b.version.config_fingerprint : null,
        }
      : null,
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

  // Every instance must serve the hashed assets of both releases (drift/assets.ts).
  items.push(...(await assetStoreDrift(o, [ctx.manifest, ctx.rollbackManifest ?? null])));

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
        items.push({ kind: 'proxy-state', message: `the proxy has it ${p.state} while no live deploy holds the lock: it gets no new traffic`, detail: { state: p.state, inflight: p.inflight } });
      }
    }
  }
  row.status = items.length ? 'drift' : 'ok';
  return row;
}
