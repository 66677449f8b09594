/**
 * Messages between the primary and its workers. The primary owns the instance set, admin state,
 * health and ejection; workers own requests (in-flight, held). The same messages go over
 * node:cluster IPC (worker mode) and as plain calls to the in-process worker (one process).
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { ProxyConfig } from './config.ts';
import type { InstanceState } from './upstream.ts';

/** What a worker needs to know about one instance. */
export interface InstanceSnapshot {
  name: string;
  url: string;
  weight: number;
  maxConnections?: number;
  state: InstanceState;
  healthy: boolean;
  ejected: boolean;
  /** Back-offs in a row (passive ejection); a worker that sees a success after them says `recovered`. */
  ejections: number;
}

/** The proxy configuration without the logger (not serialisable). */
export type WorkerConfig = Omit<ProxyConfig, 'logger'>;

/** One worker's in-flight and held requests, by instance name. */
export interface WorkerCounts {
  inflight: Record<string, number>;
  held: Record<string, number>;
}

export type PrimaryMessage =
  | { t: 'start'; config: WorkerConfig; instances: InstanceSnapshot[] }
  | { t: 'state'; instances: InstanceSnapshot[] }
  | { t: 'query'; id: number }
  | { t: 'drainWait'; id: number; name: string; timeoutMs: number }
  | { t: 'metrics'; id: number }
  | { t: 'shutdown' };

export type WorkerMessage =
  | { t: 'hello' }
  | { t: 'ready'; port: number; address: string; family: string }
  | { t: 'failed'; message: string; code?: string }
  | ({ t: 'report' } & WorkerCounts)
  | ({ t: 'status'; id: number } & WorkerCounts)
  | { t: 'drained'; id: number; drained: boolean; inflight: number }
  | { t: 'metrics'; id: number; json: Array<MetricObjectWithValues<MetricValue<string>>> }
  | { t: 'eject'; name: string; reason: string }
  | { t: 'recovered'; name: string };
