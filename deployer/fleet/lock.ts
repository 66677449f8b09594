/**
 * The deploy lock, all of it: taking it on the whole fleet (all or nothing, in name order),
 * waiting for it, its heartbeat, releasing it, and for `lockstep lock status|release` who holds
 * it on each instance, whether it is stale, and breaking stale locks. A lock is stale when its
 * last heartbeat is older than `deploy.lock_ttl_ms`, or when it was taken on this machine by a
 * process that no longer exists. The remote commands are built in remote/commands.ts.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { LockHeldError } from '../../config/errors.ts';
import * as cmd from '../remote/commands.ts';
import { openFleet, reasonOf, type Fleet, type TransportFactory } from './fleet.ts';
import type { InstanceOps } from './instance.ts';
import type { Inventory } from '../../config/inventory.ts';

export interface LockInfo {
  instance: string;
  held: boolean;
  holder: Record<string, unknown> | null;
  stale: boolean;
  /** Why the lock is stale, or why it is considered live. */
  reason: string;
  error?: string;
}

/** True when `pid` is a live process on this machine (signal 0 probes without sending). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Judge a lock holder record.
 * @param nowMs current time (ms since epoch). @param ttlMs lock TTL (ms).
 */
export function judgeHolder(holder: Record<string, unknown>, nowMs: number, ttlMs: number, machine = os.hostname()): { stale: boolean; reason: string } {
  // A maintenance lock outlives the command that took it: never stale, only released by hand.
  if (isMaintenanceLock(holder)) return { stale: false, reason: `maintenance lock: "${String(holder.message ?? '')}" (ends with \`lockstep lock release\`)` };
  // A running deploy refreshes `heartbeat` before every batch; older holders only have `time`.
  const time = Date.parse(String(holder.heartbeat ?? holder.time ?? ''));
  const ageMs = Number.isFinite(time) ? nowMs - time : Number.POSITIVE_INFINITY;
  if (ageMs > ttlMs) return { stale: true, reason: Number.isFinite(ageMs) ? `older than the TTL (${Math.round(ageMs / 1000)} s > ${Math.round(ttlMs / 1000)} s)` : 'no valid time recorded' };
  const pid = Number(holder.pid);
  if (holder.machine === machine && Number.isInteger(pid) && pid > 0) {
    return pidAlive(pid) ? { stale: false, reason: `held by live process ${pid} on this machine` } : { stale: true, reason: `holder process ${pid} on this machine is gone` };
  }
  return { stale: false, reason: `taken ${Math.round(ageMs / 1000)} s ago on ${String(holder.machine ?? '?')}; stale after the TTL` };
}

/** Read and judge the lock of one instance. */
async function readLock(o: InstanceOps, ttlMs: number): Promise<LockInfo> {
  await o.transport.connect();
  // A torn holder file from a killed deploy reads as `{unreadable: true}`: judged by its (missing) time.
  const holder = await o.readLockHolder();
  if (!holder) return { instance: o.name, held: false, holder: null, stale: false, reason: 'free' };
  return { instance: o.name, held: true, holder, ...judgeHolder(holder, Date.now(), ttlMs) };
}

/** Without the owner token: it is a capability and never printed. */
function publicHolder(h: Record<string, unknown> | null): Record<string, unknown> | null {
  if (!h) return null;
  const { token: _token, ...rest } = h;
  return rest;
}

/** Lock state of every instance (unreachable ones carry `error`). */
export async function lockStatus(inventory: Inventory, options: { factory?: TransportFactory } = {}): Promise<LockInfo[]> {
  const fleet = openFleet(inventory, { factory: options.factory });
  try {
    const results = await fleet.each((o) => readLock(o, inventory.deploy.lock_ttl_ms));
    return results.map((r, i) =>
      r.status === 'fulfilled'
        ? { ...r.value, holder: publicHolder(r.value.holder) }
        : { instance: fleet.ops[i]!.name, held: false, holder: null, stale: false, reason: 'unreachable', error: reasonOf(r) },
    );
  } finally {
    await fleet.close();
  }
}

/**
 * Release maintenance locks (`lockstep lock acquire`), and break stale deploy locks (with
 * `force`); live deploy locks are never broken. Each break is recorded in the
 * instance's history as `lock-broken`.
 * @returns per instance what was found and whether it was broken.
 */
export async function breakLocks(inventory: Inventory, options: { force: boolean; factory?: TransportFactory }): Promise<(LockInfo & { broken: boolean })[]> {
  const fleet = openFleet(inventory, { factory: options.factory });
  try {
    const results = await fleet.each(async (o) => {
      const info = await readLock(o, inventory.deploy.lock_ttl_ms);
      const maintenance = info.holder !== null && isMaintenanceLock(info.holder);
      if (!info.held || (!maintenance && (!info.stale || !options.force))) return { ...info, holder: publicHolder(info.holder), broken: false };
      await o.run(cmd.breakLock(o.layout));
      await o
        .appendHistory({
          event: 'lock-broken',
          operation: 'lock',
          release: String(info.holder?.release ?? ''),
          digest: '',
          previous: null,
          message: maintenance
            ? `maintenance lock of ${String(info.holder?.user ?? '?')}@${String(info.holder?.machine ?? '?')} released ("${String(info.holder?.message ?? '')}")`
            : `stale lock of ${String(info.holder?.user ?? '?')}@${String(info.holder?.machine ?? '?')} broken: ${info.reason}`,
        })
        .catch(() => {});
      return { ...info, holder: publicHolder(info.holder), broken: true };
    });
    return results.map((r, i) =>
      r.status === 'fulfilled'
        ? r.value
        : { instance: fleet.ops[i]!.name, held: false, holder: null, stale: false, reason: 'unreachable', error: reasonOf(r), broken: false },
    );
  } finally {
    await fleet.close();
  }
}

/**
 * Take the lock on every instance, retrying every second for up to `waitMs` while it is held.
 * An aborted `signal` (Ctrl-C, SIGTERM) stops the wait at the next retry.
 * @throws LockHeldError when still held at the deadline or when `signal` was aborted while waiting.
 */
export async function lockFleetWaiting(fleet: Fleet, holder: Record<string, unknown>, waitMs: number, progress: (i: string, l: string) => void, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    try {
      await lockFleet(fleet, holder);
      return;
    } catch (e) {
      if (!(e instanceof LockHeldError) || Date.now() + 1000 > deadline || signal?.aborted) throw e;
      if (attempt === 0) progress('lock', `${e.message}; waiting up to ${waitMs} ms`);
      await new Promise<void>((r) => {
        const t = setTimeout(done, 1000);
        function done(): void {
          clearTimeout(t);
          signal?.removeEventListener('abort', done);
          r();
        }
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }
}

/** A lock holder record (written to `.lockstep/lock/holder.json` on every instance). */
export function newLockHolder(release: string, message?: string): Record<string, unknown> {
  return {
    token: randomBytes(16).toString('hex'),
    // Public (unlike the token): lets a scan under this lock tell its own lock from another's.
    id: randomBytes(8).toString('hex'),
    user: os.userInfo().username,
    machine: os.hostname(),
    pid: process.pid,
    time: new Date().toISOString(),
    release,
    message: message ?? 'deploy',
  };
}

/**
 * Take the lock on every instance, all or nothing, one instance at a time in name order: two
 * deploys racing for the same fleet meet at the first instance, so exactly one of them wins
 * (taking locks in parallel could leave each holding part of the fleet and both giving up).
 * When one is held, the ones already taken are released again.
 * @throws LockHeldError naming the held instance and its holder.
 */
export async function lockFleet(fleet: Fleet, holder: Record<string, unknown>): Promise<void> {
  const ordered = [...fleet.ops].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const taken: InstanceOps[] = [];
  try {
    for (const o of ordered) {
      await o.acquireLock(holder);
      taken.push(o);
    }
  } catch (e) {
    await Promise.allSettled(taken.map((o) => o.releaseLock(String(holder.token))));
    throw e;
  }
}

/**
 * A heartbeat for a held fleet lock: rewrites every instance's holder record with a fresh
 * `heartbeat` time, so a deploy that runs longer than `deploy.lock_ttl_ms` is not judged stale.
 */
export function lockHeartbeat(fleet: Fleet, holder: Record<string, unknown>): () => Promise<void> {
  return async () => {
    const beat = { ...holder, heartbeat: new Date().toISOString() };
    await fleet.each((o) => o.refreshLock(beat));
  };
}

/**
 * Release the lock on every instance where `token` holds it. Best effort: an instance that
 * cannot be reached keeps the lock; `progress`, when given, gets one line naming it and the
 * command that recovers (the lock is stale once this process is gone).
 * @returns the instances whose lock could not be released, with why.
 */
export async function unlockFleet(
  fleet: Fleet,
  token: string,
  progress?: (instance: string, line: string) => void,
): Promise<{ instance: string; error: string }[]> {
  const results = await fleet.each((o) => o.releaseLock(token));
  const kept = results.flatMap((r, i) => (r.status === 'rejected' ? [{ instance: fleet.ops[i]!.name, error: reasonOf(r) }] : []));
  for (const k of kept) {
    progress?.(k.instance, `LOCK STILL HELD by this run: releasing it failed (${k.error}); once the host answers, run \`lockstep lock release --force\` (stale: this process is gone)`);
  }
  return kept;
}

/** True for a holder record written by `lockstep lock acquire` (a maintenance window). */
export function isMaintenanceLock(holder: Record<string, unknown>): boolean {
  return holder.kind === 'maintenance';
}

/**
 * Take a maintenance lock on the whole fleet (`lockstep lock acquire -m`, Kamal's manual lock):
 * the same lock a deploy takes (all or nothing, in name order), with `kind: maintenance` and the
 * operator's message. Deploys, rollbacks and repairs are refused while it is held, naming the
 * holder and the message; it is never judged stale (no TTL, no process check) and ends only with
 * `lockstep lock release`. @returns the holder record (without its token).
 * @throws LockHeldError naming the instance and holder when any instance is already locked
 *   (nothing is left locked); UnreachableInstanceError when an instance cannot be reached.
 */
export async function acquireMaintenanceLock(inventory: Inventory, message: string, options: { factory?: TransportFactory } = {}): Promise<Record<string, unknown>> {
  const fleet = openFleet(inventory, { factory: options.factory });
  try {
    const holder = { ...newLockHolder('maintenance', message), kind: 'maintenance' };
    await lockFleet(fleet, holder);
    return publicHolder(holder)!;
  } finally {
    await fleet.close();
  }
}
