/**
 * The control interface of a running proxy: what the admin API and the fleet dashboard act on.
 * One implementation (`index.ts`), the same in one process and in worker mode.
 */
import type { InstanceState, UpstreamStatus } from './upstream.ts';

/** The answer to a drain: whether in-flight reached 0 (every worker), what is left, the state now. */
export interface DrainOutcome {
  drained: boolean;
  inflight: number;
  state: InstanceState;
}

/** What the admin API acts on. */
export interface AdminControl {
  instances(): Promise<UpstreamStatus[]>;
  /** @returns the instance's status after the change, or undefined for an unknown name. */
  setState(name: string, state: Exclude<InstanceState, 'draining'>): Promise<UpstreamStatus | undefined>;
  /**
   * Mark `name` draining; with `waitMs`, resolve once nothing is in flight on it (every worker) or
   * after `waitMs`. @returns undefined for an unknown name.
   */
  drain(name: string, waitMs: number | null): Promise<DrainOutcome | undefined>;
  metrics(): Promise<{ contentType: string; text: string }>;
  /** Re-reads the upstream set (e.g. from the inventory); absent when the proxy was given a fixed list. */
  reload?: () => Promise<{ added: string[]; removed: string[] }>;
}
