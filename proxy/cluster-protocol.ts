/**
 * Messages between the cluster primary and its workers (node:cluster IPC). The primary owns the
 * instance set, admin state, health and ejection; workers own requests (in-flight, held).
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
}

/** The proxy configuration without the logger (not serialisable). */
export type WorkerConfig = Omit<ProxyConfig, 'logger'>;

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
  | { t: 'report'; inflight: Record<string, number>; held: Record<string, number> }
  | { t: 'status'; id: number; inflight: Record<string, number>; held: Record<string, number> }
  | { t: 'drained'; id: number; drained: boolean; inflight: number }
  | { t: 'metrics'; id: number; json: Array<MetricObjectWithValues<MetricValue<string>>> }
  | { t: 'eject'; name: string; reason: string };
