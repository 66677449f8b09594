/**
 * The rollout the deployer announced through the admin API (`POST /admin/rollout`), so the
 * dashboard can say "ROLLING OUT r2: 1 of 3 (holder)" instead of calling a rolling deploy drift.
 * An announcement expires by itself after its `ttl_ms` (the deployer re-announces at least every
 * 5 s while it runs), so a deployer killed mid-rollout does not leave the banner up forever.
 */
import type { RolloutInProgress } from '../verdict/fleet-verdict.ts';

/** Default and upper bound of an announcement's lifetime, ms. */
export const DEFAULT_ROLLOUT_TTL_MS = 20_000;
export const MAX_ROLLOUT_TTL_MS = 600_000;
/** Upper bound of a `POST /admin/rollout` body, bytes. */
export const MAX_ROLLOUT_BODY = 4096;

/** What GET /admin/rollout answers: the announcement, when it was made and when it expires (ISO). */
export interface RolloutAnnouncement extends RolloutInProgress {
  at: string;
  expires: string;
}

const text = (v: unknown, max = 200): string | undefined => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : undefined);
const count = (v: unknown): number | undefined => (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 100_000 ? (v as number) : undefined);

/**
 * Validate a `POST /admin/rollout` body: `{release, holder, done, total, operation?, phase?, ttl_ms?}`.
 * @returns the announcement and its lifetime (ms), or a message naming the bad field.
 */
export function parseRolloutBody(body: unknown): { rollout: RolloutInProgress; ttlMs: number } | string {
  if (body === null || typeof body !== 'object') return 'the body must be a JSON object {release, holder, done, total, operation?, phase?, ttl_ms?}';
  const b = body as Record<string, unknown>;
  const release = text(b.release);
  const holder = text(b.holder);
  const done = count(b.done);
  const total = count(b.total);
  if (!release) return 'release: a non-empty string of at most 200 characters';
  if (!holder) return 'holder: a non-empty string of at most 200 characters (user@host)';
  if (done === undefined || total === undefined || done > total) return 'done and total: whole numbers with done <= total';
  const ttl = b.ttl_ms === undefined ? DEFAULT_ROLLOUT_TTL_MS : b.ttl_ms;
  if (!Number.isInteger(ttl) || (ttl as number) < 1 || (ttl as number) > MAX_ROLLOUT_TTL_MS) return `ttl_ms: a whole number of ms, 1..${MAX_ROLLOUT_TTL_MS}`;
  const rollout: RolloutInProgress = { release, holder, done, total };
  const operation = text(b.operation, 20);
  const phase = text(b.phase, 300);
  if (operation) rollout.operation = operation;
  if (phase) rollout.phase = phase;
  return { rollout, ttlMs: ttl as number };
}

/** The current announcement of one proxy. */
export class RolloutBoard {
  private value: { rollout: RolloutInProgress; atMs: number; expiresMs: number } | null = null;

  /** Replace the announcement; it expires `ttlMs` from `nowMs`. */
  announce(rollout: RolloutInProgress, ttlMs: number, nowMs = Date.now()): void {
    this.value = { rollout, atMs: nowMs, expiresMs: nowMs + ttlMs };
  }

  /** The rollout ended (DELETE /admin/rollout). */
  clear(): void {
    this.value = null;
  }

  /** The announcement in force, or null (none, or expired). */
  current(nowMs = Date.now()): RolloutAnnouncement | null {
    if (this.value === null) return null;
    if (nowMs >= this.value.expiresMs) {
      this.value = null;
      return null;
    }
    return { ...this.value.rollout, at: new Date(this.value.atMs).toISOString(), expires: new Date(this.value.expiresMs).toISOString() };
  }
}
