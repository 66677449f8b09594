/**
 * Operations on one instance: preflight, upload, on-host verification, unpack, link, activate,
 * gates, history, lock. Each runs commands from `remote/commands.ts` through a Transport and
 * knows nothing about rollout order or other instances.
 */
import os from 'node:os';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import {
  ChecksumMismatchError,
  GateFailedError,
  LockHeldError,
  LockstepError,
  RemoteCommandError,
  TransferError,
  UnreachableInstanceError,
} from '../../config/errors.ts';
import type { Instance, Inventory } from '../../config/inventory.ts';
import { serviceEnv, type VersionInfo } from './service-env.ts';
import type { Manifest } from '../build/manifest.ts';
import * as cmd from '../remote/commands.ts';
import { layoutOf, releaseDir, type Layout } from '../remote/layout.ts';
import { diffTree, isCleanDiff, parseHashTree, type TreeDiff } from '../remote/parse.ts';
import type { ExecResult, Transport } from '../transport/types.ts';
import { succeeded } from '../transport/types.ts';
import { completeEntry, parseHistory, type AuditContext, type HistoryEntry, type HistoryInput } from './history.ts';

export type { HistoryEntry } from './history.ts';
export { parseHistory } from './history.ts';

export { serviceEnv, type VersionInfo } from './service-env.ts';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class InstanceOps {
  readonly layout: Layout;
  /** What the running command says about itself in the history (operation, `-m` message). */
  audit: AuditContext = {};
  /** Manifest `source` per release id, read once per release for history entries. */
  private readonly sources = new Map<string, HistoryEntry['source']>();

  constructor(
    readonly instance: Instance,
    readonly transport: Transport,
    readonly inventory: Inventory,
  ) {
    this.layout = layoutOf(instance.deployTo);
  }

  get name(): string {
    return this.instance.name;
  }

  /** Run a command; @returns stdout. @throws RemoteCommandError unless exit 0 without a signal. */
  async run(command: string, timeoutMs?: number): Promise<string> {
    const r: ExecResult = await this.transport.exec(command, timeoutMs ? { timeoutMs } : {});
    if (!succeeded(r)) throw new RemoteCommandError(this.name, command, r.code, r.signal, r.stderr);
    return r.stdout;
  }

  /**
   * Connect and check the instance can take a release (tools present, deploy_to writable).
   * Changes nothing. @returns the release `current` points at, or null.
   */
  async preflight(): Promise<{ current: string | null }> {
    await this.transport.connect();
    const r = await this.transport.exec(cmd.preflight(this.layout));
    if (!succeeded(r)) {
      throw new LockstepError('LOCKSTEP_PREFLIGHT', `preflight failed on ${this.name}: ${r.stderr.trim() || `exit ${r.code}`}`, 3);
    }
    return { current: releaseIdFromLink(r.stdout.trim()) };
  }

  /** The release `current` points at, or null when there is none. */
  async currentRelease(): Promise<string | null> {
    return releaseIdFromLink((await this.run(cmd.readCurrent(this.layout))).trim());
  }

  /**
   * The deploy lock's holder, without its owner token (a capability, never shown).
   * @returns null when the lock is free; `{unreadable: true}` when held but holder.json is unreadable.
   */
  async readLockHolder(): Promise<Record<string, unknown> | null> {
    return parseLockHolder(await this.run(cmd.readLockHolder(this.layout)));
  }

  /** True when `artifacts/<digest>.tar.gz` is on the host with the manifest's artifact sha256 (hashed on the host). */
  async hasArtifact(manifest: Manifest): Promise<boolean> {
    return (await this.run(cmd.artifactHash(this.layout, manifest.digest))).trim() === manifest.artifact.sha256;
  }

  /**
   * Create releases/, artifacts/, shared/<dirs>, .lockstep/, and remove what killed or failed
   * deploys left (partial uploads, staging dirs). Call only while holding the fleet's lock.
   * @returns the leftover paths removed.
   */
  async prepare(): Promise<string[]> {
    await this.run(cmd.prepareLayout(this.layout, this.inventory.app.shared_dirs));
    return (await this.run(cmd.removeLeftovers(this.layout))).split('\n').filter(Boolean);
  }

  /**
   * Upload the artifact unless the host already has a file with the right sha256.
   * The upload goes to a temp name, is hashed ON the host, and is renamed into place only when
   * it matches; a mismatch is uploaded again once, then fails.
   * A transfer that stalls, overruns its bound (deploy.upload_no_progress_ms, upload_timeout_ms)
   * or drops is tried once more; `options.signal` aborts it (not retried).
   * @param options.onRetry called with the first attempt's error before the retry.
   * @param options.onPhase told when the transfer ('upload') and the hash on the host ('verify') start.
   * @returns whether bytes were sent, and how many.
   * @throws ChecksumMismatchError naming the host and both hashes after the second mismatch;
   *   TransferError or UnreachableInstanceError when the second transfer fails too.
   */
  async uploadArtifact(
    localArtifact: string,
    manifest: Manifest,
    options: { signal?: AbortSignal; onRetry?: (why: string) => void; onPhase?: (phase: 'upload' | 'verify') => void } = {},
  ): Promise<{ uploaded: boolean; bytes: number }> {
    const onPhase = options.onPhase ?? (() => {});
    const expected = manifest.artifact.sha256;
    onPhase('verify');
    const present = (await this.run(cmd.artifactHash(this.layout, manifest.digest))).trim();
    if (present === expected) return { uploaded: false, bytes: 0 };
    let actual = '';
    for (let attempt = 1; attempt <= 2; attempt++) {
      onPhase('upload');
      try {
        await this.transport.putFile(localArtifact, cmd.artifactUploadPath(this.layout, manifest.digest), { signal: options.signal });
      } catch (e) {
        // A stalled, overlong or dropped transfer is tried once more (the connection is opened
        // again when it dropped); an interrupt, a host that does not answer a connect, or a
        // missing directory / denied permission is not.
        const code = (e as NodeJS.ErrnoException).code;
        const retry =
          attempt === 1 &&
          !options.signal?.aborted &&
          !(e instanceof TransferError && e.interrupted) &&
          !(e instanceof UnreachableInstanceError && /not retried/.test(e.reason)) &&
          code !== 'ENOENT' &&
          code !== 'EACCES';
        if (!retry) throw e;
        options.onRetry?.((e as Error).message);
        continue;
      }
      onPhase('verify');
      actual = (await this.run(cmd.uploadedHash(this.layout, manifest.digest))).trim();
      if (actual === expected) {
        await this.run(cmd.commitUpload(this.layout, manifest.digest));
        return { uploaded: true, bytes: manifest.artifact.bytes };
      }
      await this.run(cmd.discardUpload(this.layout, manifest.digest));
    }
    throw new ChecksumMismatchError(this.name, cmd.artifactUploadPath(this.layout, manifest.digest), expected, actual);
  }

  /** Hash a directory on the host and compare it with the manifest's file list. */
  async verifyTree(dir: string, manifest: Manifest): Promise<TreeDiff> {
    const out = await this.run(cmd.hashTree(dir));
    return diffTree(manifest.files, parseHashTree(out));
  }

  /**
   * Make `releases/<id>` hold exactly the manifest's files. An existing release dir that still
   * verifies is reused; otherwise the artifact is unpacked into a staging dir, every file is
   * verified against the manifest on the host, the manifest is written, and the staging dir is
   * renamed into place. @returns whether an existing release was reused.
   * @throws ChecksumMismatchError when the unpacked files do not match (staging is removed).
   */
  async unpackRelease(manifest: Manifest, onPhase: (phase: 'unpack' | 'verify') => void = () => {}): Promise<{ reused: boolean }> {
    const dir = releaseDir(this.layout, manifest.release);
    onPhase('verify');
    const exists = succeeded(await this.transport.exec(cmd.releaseExists(this.layout, manifest.release)));
    if (exists && isCleanDiff(await this.verifyTree(dir, manifest))) {
      await this.writeManifest(dir, manifest);
      return { reused: true };
    }
    onPhase('unpack');
    await this.run(cmd.unpackToStaging(this.layout, manifest.release, manifest.digest));
    const staging = cmd.stagingDir(this.layout, manifest.release);
    onPhase('verify');
    const diff = await this.verifyTree(staging, manifest);
    if (!isCleanDiff(diff)) {
      await this.transport.exec(cmd.discardStaging(this.layout, manifest.release));
      const first = diff.changed[0];
      throw new ChecksumMismatchError(
        this.name,
        first?.path ?? diff.missing[0] ?? diff.added[0] ?? staging,
        first?.expected ?? '(in manifest)',
        first?.actual ?? (diff.missing.length ? '(missing)' : '(not in manifest)'),
      );
    }
    await this.writeManifest(staging, manifest);
    await this.run(cmd.commitRelease(this.layout, manifest.release));
    return { reused: false };
  }

  private async writeManifest(dir: string, manifest: Manifest): Promise<void> {
    // A private temp dir per call: instances are prepared in parallel from one process.
    const tmpDir = await mkdtemp(join(os.tmpdir(), 'lockstep-manifest-'));
    const tmp = join(tmpDir, 'manifest.json');
    try {
      await writeFile(tmp, JSON.stringify(manifest, null, 2) + '\n');
      await this.transport.putFile(tmp, cmd.manifestPathIn(dir));
    } finally {
      await rm(tmpDir, { recursive: true, force: true });
    }
  }

  /** Link the shared dirs into a release. */
  async linkShared(id: string): Promise<void> {
    await this.run(cmd.linkShared(this.layout, id, this.inventory.app.shared_dirs));
  }

  /** Read the manifest of the release `current` points at. @throws when missing or unreadable. */
  async readCurrentManifest(): Promise<Manifest> {
    return JSON.parse(await this.transport.readFile(cmd.manifestPathIn(this.layout.current))) as Manifest;
  }

  /**
   * Activate a release: switch `current` atomically, then restart the app through the
   * inventory's service command. Does not wait for health (see `waitForGates`).
   * @returns what /version said before the restart (null when nothing answered), so the gate
   *   can insist on a NEW process: an old one still holding the port must not pass for it.
   */
  async activate(id: string, onPhase: (phase: 'switch' | 'restart') => void = () => {}): Promise<VersionInfo | null> {
    onPhase('switch');
    const before = await this.readVersion();
    await this.run(cmd.switchCurrent(this.layout, id));
    onPhase('restart');
    await this.run(
      cmd.serviceCommand(this.layout, this.inventory.app.service.restart, serviceEnv(this.instance, this.layout, {}, this.inventory.app)),
      this.inventory.deploy.activation_timeout_ms,
    );
    return before;
  }

  /**
   * Run a remote hook command with the app-contract environment plus LOCKSTEP_HOOK,
   * LOCKSTEP_RELEASE and LOCKSTEP_DIGEST, in `dir` (default `current`).
   * @throws LockstepError LOCKSTEP_HOOK_FAILED naming the hook, instance and exit status.
   */
  async runHook(command: string, hook: string, release: { release: string; digest: string }, dir?: string): Promise<void> {
    const env = serviceEnv(this.instance, this.layout, { LOCKSTEP_HOOK: hook, LOCKSTEP_RELEASE: release.release, LOCKSTEP_DIGEST: release.digest }, this.inventory.app);
    const r = await this.transport.exec(command, { cwd: dir ?? this.layout.current, env, timeoutMs: this.inventory.deploy.activation_timeout_ms });
    if (!succeeded(r)) {
      const tail = r.stderr.trim().split('\n').slice(-3).join(' | ');
      throw new LockstepError('LOCKSTEP_HOOK_FAILED', `${hook} hook failed on ${this.name} (${r.signal ? `signal ${r.signal}` : `exit ${r.code}`})${tail ? `: ${tail}` : ''}`, 3);
    }
  }

  /** Stop the app through the inventory's stop command (no-op when there is no `current`). */
  async stopApp(): Promise<void> {
    const current = await this.currentRelease();
    if (!current) return;
    await this.run(cmd.serviceCommand(this.layout, this.inventory.app.service.stop, serviceEnv(this.instance, this.layout, {}, this.inventory.app)));
  }

  /** GET the app's /version directly. @returns the parsed JSON, or null when unreachable/not 200. */
  async readVersion(timeoutMs = 2000): Promise<VersionInfo | null> {
    try {
      const res = await request(`${this.instance.url}${this.inventory.app.version_path}`, {
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        return null;
      }
      return (await res.body.json()) as VersionInfo;
    } catch {
      return null;
    }
  }

  /** GET the app's health path. @returns true on 200. */
  async isHealthy(timeoutMs = 2000): Promise<boolean> {
    try {
      const res = await request(`${this.instance.url}${this.inventory.app.health_path}`, {
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      await res.body.dump();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  }

  /**
   * Wait until the health path answers 200 AND /version reports `digest` from a process other
   * than `replaced` (the one that answered before the restart: a different pid or start time).
   * Polls every 200 ms up to `timeoutMs`.
   * @throws GateFailedError saying which gate did not pass and what was last seen.
   */
  async waitForGates(digest: string, timeoutMs: number, replaced: VersionInfo | null = null): Promise<VersionInfo> {
    const isNew = (v: VersionInfo) => !replaced || v.pid !== replaced.pid || v.started_at !== replaced.started_at;
    const deadline = Date.now() + timeoutMs;
    let healthy = false;
    let version: VersionInfo | null = null;
    while (Date.now() < deadline) {
      healthy = await this.isHealthy();
      if (healthy) {
        version = await this.readVersion();
        if (version?.digest === digest && isNew(version)) return version;
      }
      await sleep(200);
    }
    if (!healthy) throw new GateFailedError(this.name, `health check ${this.instance.url}${this.inventory.app.health_path} did not pass within ${timeoutMs} ms`);
    if (version && replaced && !isNew(version)) {
      throw new GateFailedError(
        this.name,
        `the process that answered before the restart (pid ${String(replaced.pid)}) still answers after ${timeoutMs} ms: the restart did not replace it (a process the service command does not know may hold the port; see the app log)`,
      );
    }
    throw new GateFailedError(
      this.name,
      `version gate: expected digest ${digest.slice(0, 12)}, the running app reports ${version?.digest ? String(version.digest).slice(0, 12) : 'nothing'} (after ${timeoutMs} ms)`,
    );
  }

  /**
   * Append a line to the instance's history, completed with who, from where, the operation and
   * message (`audit`), the outcome and the release's source commit (read from its manifest on
   * the host when the caller does not give it; null when unreadable).
   */
  async appendHistory(entry: HistoryInput): Promise<void> {
    let source = entry.source;
    if (source === undefined) {
      source = this.sources.get(entry.release);
      if (source === undefined && entry.release) {
        source = await this.transport
          .readFile(`${releaseDir(this.layout, entry.release)}/manifest.json`)
          .then((t) => {
            const m = (JSON.parse(t) as Manifest).source;
            return m ? { revision: m.revision ?? null, dirty: Boolean(m.dirty) } : null;
          })
          .catch(() => null);
        this.sources.set(entry.release, source);
      }
    }
    const full = completeEntry(entry, this.name, this.audit, source ?? null);
    await this.run(cmd.appendHistory(this.layout, full as unknown as Record<string, unknown>));
  }

  /** Remember a release's source for history entries (the deploy has its manifest at hand). */
  noteSource(manifest: Manifest): void {
    this.sources.set(manifest.release, { revision: manifest.source?.revision ?? null, dirty: Boolean(manifest.source?.dirty) });
  }

  /** Read the instance's history (oldest first). Unparseable lines are skipped. */
  async readHistory(): Promise<HistoryEntry[]> {
    return parseHistory(await this.run(cmd.readHistory(this.layout)));
  }

  /** Take the deploy lock. @throws LockHeldError with the holder's details when held. */
  async acquireLock(holder: Record<string, unknown>): Promise<void> {
    const r = await this.transport.exec(cmd.acquireLock(this.layout, holder));
    if (r.code === 20) {
      let details: Record<string, unknown> = {};
      try {
        details = JSON.parse(r.stdout.trim() || '{}') as Record<string, unknown>;
      } catch {
        /* unreadable holder file */
      }
      throw new LockHeldError(this.name, details);
    }
    if (!succeeded(r)) throw new RemoteCommandError(this.name, 'acquire lock', r.code, r.signal, r.stderr);
  }

  /** Rewrite the lock's holder record (its heartbeat) if `holder.token` owns it. */
  async refreshLock(holder: Record<string, unknown>): Promise<void> {
    await this.run(cmd.refreshLock(this.layout, holder));
  }

  /** Release the deploy lock if `token` owns it. */
  async releaseLock(token: string): Promise<void> {
    await this.run(cmd.releaseLock(this.layout, token));
  }
}

/** `releases/<id>` (or an absolute path ending in it) -> `<id>`; anything else -> null. */
export function releaseIdFromLink(target: string): string | null {
  const m = /(?:^|\/)releases\/([^/]+)\/?$/.exec(target);
  return m ? m[1]! : null;
}

/** Parse lock holder.json text: null when empty, `{unreadable: true}` when not JSON; the owner token is removed. */
export function parseLockHolder(text: string): Record<string, unknown> | null {
  if (!text.trim()) return null;
  try {
    const holder = JSON.parse(text) as Record<string, unknown>;
    delete holder.token;
    return holder;
  } catch {
    return { unreadable: true };
  }
}
