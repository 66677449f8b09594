/**
 * `lockstep lock status|release`: who holds the deploy lock on each instance, whether it is
 * stale, and breaking stale locks. A lock is stale when it is older than `deploy.lock_ttl_ms`,
 * or when it was taken on this machine by a process that no longer exists.
 */
import os from 'node:os';
import { openFleet, reasonOf, type TransportFactory } from './fleet.ts';
import type { InstanceOps } from './instance.ts';
import type { Inventory } from '../../config/inventory.ts';
import { shq } from '../remote/shell.ts';

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

async function readLock(o: InstanceOps, ttlMs: number): Promise<LockInfo> {
  await o.transport.connect();
  const r = await o.transport.exec(`if [ -d ${shq(o.layout.lock)} ]; then cat ${shq(`${o.layout.lock}/holder.json`)} 2>/dev/null || echo '{}'; fi`);
  const text = r.stdout.trim();
  if (!text) return { instance: o.name, held: false, holder: null, stale: false, reason: 'free' };
  let holder: Record<string, unknown> = {};
  try {
    holder = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* a torn holder file from a killed deploy: judged by its (missing) time */
  }
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
 * Break stale locks (with `force`); live locks are never broken. Each break is recorded in the
 * instance's history as `lock-broken`.
 * @returns per instance what was found and whether it was broken.
 */
export async function breakLocks(inventory: Inventory, options: { force: boolean; factory?: TransportFactory }): Promise<(LockInfo & { broken: boolean })[]> {
  const fleet = openFleet(inventory, { factory: options.factory });
  try {
    const results = await fleet.each(async (o) => {
      const info = await readLock(o, inventory.deploy.lock_ttl_ms);
      if (!info.held || !info.stale || !options.force) return { ...info, holder: publicHolder(info.holder), broken: false };
      await o.run(`rm -rf ${shq(o.layout.lock)}`);
      await o
        .appendHistory({
          event: 'lock-broken',
          release: String(info.holder?.release ?? ''),
          digest: '',
          previous: null,
          message: `stale lock of ${String(info.holder?.user ?? '?')}@${String(info.holder?.machine ?? '?')} broken: ${info.reason}`,
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
