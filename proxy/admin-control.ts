/**
 * The one interface both the admin API (admin.ts) and the fleet dashboard (dashboard*.ts) read and
 * act through: one proxy process (index.ts) or the primary of a cluster of workers (cluster.ts)
 * implements it. Its own file so that neither side imports the other for it.
 */
import type { InstanceState, UpstreamStatus } from './upstream.ts';

/** What the admin API acts on: one proxy process, or the primary of a cluster of workers. */
export interface AdminControl {
  /** Every instance's status, in configuration order. */
  instances(): Promise<UpstreamStatus[]>;
  /** @returns the instance's status after the change, or undefined for an unknown name. */
  setState(name: string, state: Exclude<InstanceState, 'draining'>): Promise<UpstreamStatus | undefined>;
  /**
   * Mark `name` draining; with `waitMs` (ms), resolve once nothing is in flight on it (every worker)
   * or after `waitMs`. @returns undefined for an unknown name.
   */
  drain(name: string, waitMs: number | null): Promise<{ drained: boolean; inflight: number; state: InstanceState } | undefined>;
  /** Prometheus text of every metric (summed over workers in worker mode). */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Re-reads the upstream set (e.g. from the inventory); absent when the proxy was given a fixed list. */
  reload?: () => Promise<{ added: string[]; removed: string[] }>;
}
