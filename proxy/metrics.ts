/**
 * Prometheus metrics (prom-client), served by the admin API at `/metrics`. Each proxy has its own
 * registry, so several proxies in one process (tests) do not collide. Gauges that mirror pool
 * state (in-flight, health, admin state) are read at scrape time, so the request path never
 * touches them.
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { UpstreamPool } from './pool.ts';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** Label used when a request was answered by the proxy itself without any instance (503). */
export const NO_INSTANCE = 'none';

interface InstanceLabels {
  instance: { instance: string };
  byClass: Array<{ instance: string; status_class: string }>;
}

/** The proxy's Prometheus metrics, on a registry of its own. */
export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<'instance' | 'status_class'>;
  private readonly duration: Histogram<'instance'>;
  private readonly retries: Counter<'instance'>;
  private readonly ejections: Counter<'instance'>;
  private readonly upstreamErrors: Counter<'instance' | 'kind'>;
  private readonly uploads: Counter<'outcome'>;
  private uploadOk = 0;
  private uploadFailed = 0;
  /** Label objects reused per request, so observing allocates nothing. */
  private labelCache = new Map<string, InstanceLabels>();

  /**
   * @param pool the instances the gauges describe.
   * @param options.poolGauges include health and admin-state gauges (off in cluster workers: the
   *   primary owns that state and reports it once).
   */
  constructor(pool: UpstreamPool, options: { poolGauges?: boolean } = {}) {
    const registers = [this.registry];
    const poolRegisters = options.poolGauges === false ? [] : registers;
    this.requests = new Counter({
      name: 'lockstep_proxy_requests_total',
      help: 'Requests answered, by instance and HTTP status class ("aborted" when the client left first)',
      labelNames: ['instance', 'status_class'],
      registers,
    });
    this.duration = new Histogram({
      name: 'lockstep_proxy_request_duration_seconds',
      help: 'Time from request received to response finished, by instance',
      labelNames: ['instance'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    new Gauge({
      name: 'lockstep_proxy_inflight_requests',
      help: 'Requests sent to an instance and not yet completed',
      labelNames: ['instance'],
      registers,
      collect() {
        this.reset();
        for (const u of pool.upstreams) this.set({ instance: u.name }, u.inflight);
      },
    });
    new Gauge({
      name: 'lockstep_proxy_instance_healthy',
      help: '1 when the active health checks consider the instance healthy',
      labelNames: ['instance'],
      registers: poolRegisters,
      collect() {
        this.reset();
        for (const u of pool.upstreams) this.set({ instance: u.name }, u.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'lockstep_proxy_instance_state',
      help: '1 for the admin state the instance is in (enabled, draining, disabled)',
      labelNames: ['instance', 'state'],
      registers: poolRegisters,
      collect() {
        this.reset();
        for (const u of pool.upstreams) {
          for (const s of ['enabled', 'draining', 'disabled'] as const) this.set({ instance: u.name, state: s }, u.state === s ? 1 : 0);
        }
      },
    });
    this.retries = new Counter({
      name: 'lockstep_proxy_retries_total',
      help: 'Requests retried on another instance, by the instance that failed',
      labelNames: ['instance'],
      registers,
    });
    this.ejections = new Counter({
      name: 'lockstep_proxy_ejections_total',
      help: 'Times an instance was taken out of rotation by failures (health checks or passive ejection)',
      labelNames: ['instance'],
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'lockstep_proxy_upstream_errors_total',
      help: 'Upstream failures answered by the proxy: connect (502), timeout (504), reset (502 or cut response)',
      labelNames: ['instance', 'kind'],
      registers,
    });
    this.uploads = new Counter({
      name: 'lockstep_proxy_uploads_total',
      help: 'POSTs to the upload paths, by outcome (success = 2xx)',
      labelNames: ['outcome'],
      registers,
    });
    const self = this;
    new Gauge({
      name: 'lockstep_proxy_upload_success_ratio',
      help: 'Share of uploads answered 2xx since start (1 when there were none)',
      registers,
      // Across workers the ratio is recomputed from the summed counters (see aggregateMetrics).
      aggregator: 'omit',
      collect() {
        const total = self.uploadOk + self.uploadFailed;
        this.set(total === 0 ? 1 : self.uploadOk / total);
      },
    });
  }

  private labelsFor(instance: string): InstanceLabels {
    let l = this.labelCache.get(instance);
    if (l === undefined) {
      l = {
        instance: { instance },
        byClass: [...STATUS_CLASSES, 'aborted'].map((c) => ({ instance, status_class: c })),
      };
      this.labelCache.set(instance, l);
    }
    return l;
  }

  /**
   * Record one finished (or aborted) request.
   * @param instance instance name, or NO_INSTANCE.
   * @param statusCode HTTP status sent; ignored when `aborted`.
   * @param seconds duration, s.
   * @param aborted the client went away before the response finished.
   * @param upload the request was a POST to an upload path.
   */
  observeRequest(instance: string, statusCode: number, seconds: number, aborted: boolean, upload: boolean): void {
    const l = this.labelsFor(instance);
    const cls = aborted ? 5 : Math.min(Math.max(Math.floor(statusCode / 100), 1), 5) - 1;
    this.requests.inc(l.byClass[cls]!);
    this.duration.observe(l.instance, seconds);
    if (upload) {
      const ok = !aborted && statusCode >= 200 && statusCode < 300;
      if (ok) this.uploadOk++;
      else this.uploadFailed++;
      this.uploads.inc({ outcome: ok ? 'success' : 'failure' });
    }
  }

  upstreamError(instance: string, kind: 'connect' | 'timeout' | 'reset'): void {
    this.upstreamErrors.inc({ instance, kind });
  }

  retry(instance: string): void {
    this.retries.inc({ instance });
  }

  ejection(instance: string): void {
    this.ejections.inc({ instance });
  }
}

/**
 * The `/metrics` text of a proxy from the registries of the primary and its workers: counters and
 * histograms summed, gauges as their aggregator says; the upload success ratio, which cannot be
 * summed, recomputed from the summed upload counters.
 * @param jsons `registry.getMetricsAsJSON()` of the primary and of every worker.
 * @returns the content type and the Prometheus text.
 */
export async function aggregateMetrics(jsons: Array<Array<MetricObjectWithValues<MetricValue<string>>>>): Promise<{ contentType: string; text: string }> {
  const merged = AggregatorRegistry.aggregate(jsons);
  const uploads = jsons.flat().filter((m) => m.name === 'lockstep_proxy_uploads_total').flatMap((m) => m.values);
  const ok = uploads.filter((v) => v.labels.outcome === 'success').reduce((n, v) => n + v.value, 0);
  const total = uploads.reduce((n, v) => n + v.value, 0);
  const ratio =
    '# HELP lockstep_proxy_upload_success_ratio Share of uploads answered 2xx since start (1 when there were none)\n' +
    `# TYPE lockstep_proxy_upload_success_ratio gauge\nlockstep_proxy_upload_success_ratio ${total === 0 ? 1 : ok / total}\n`;
  return { contentType: merged.contentType, text: (await merged.metrics()) + ratio };
}
