/**
 * Forwarding over undici connection pools, one per instance: the default engine. A response is
 * relayed with one `writeHead` of a flat header array (every Set-Cookie stays its own line) and its
 * body chunks written as they arrive, with back-pressure (a slow client pauses the upstream read).
 * WebSocket upgrades go through `websocket.ts` (both engines).
 *
 * Uses undici's current dispatch handler API (onRequestStart / onResponseStart / onResponseData /
 * onResponseEnd / onResponseError, with a controller that pauses, resumes and aborts): the only one
 * undici 8 keeps, so moving to undici 8 is a version bump.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import type { ProxyTimeouts } from './config.ts';
import { appendProxyResponseHeaders, sharedCacheable, type Exchange, type FailureKind, type ForwardEvents, type Forwarder } from './exchange.ts';
import type { Upstream } from './upstream.ts';

const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'LOCKSTEP_UPSTREAM_TIMEOUT']);

/** No response headers within `responseMs`, or the body stalled for `idleMs` (a native timer: fires on time). */
export class UndiciTimeoutError extends Error {
  readonly code = 'LOCKSTEP_UPSTREAM_TIMEOUT';
}
const NO_HEADERS = new UndiciTimeoutError('the instance did not answer in time');
const BODY_STALLED = new UndiciTimeoutError('the instance stopped sending the response body');

/** Classify an undici error. */
export function undiciFailureKind(err: Error & { code?: string }): FailureKind {
  const code = err.code;
  if (code !== undefined) {
    if (CONNECT_CODES.has(code)) return 'connect';
    if (TIMEOUT_CODES.has(code)) return 'timeout';
  }
  return 'reset';
}

/** Response headers (lower-case names, as undici gives them) that describe the upstream connection, not the message: never relayed. */
function isHopByHop(key: string): boolean {
  switch (key.length) {
    case 2:
      return key === 'te';
    case 7:
      return key === 'trailer' || key === 'upgrade';
    case 10:
      return key === 'connection' || key === 'keep-alive';
    case 16:
      return key === 'proxy-connection';
    case 17:
      return key === 'transfer-encoding';
    default:
      return false;
  }
}

/**
 * One attempt of one request: the undici handler. Stale once it completed or failed.
 *
 * Its timeouts are its own native timers, not undici's headersTimeout/bodyTimeout: those run on
 * undici's coarse clock (about 0.5 s ticks) and fired up to a second late (2.5 s for 2 s).
 * `responseMs` counts from the moment the request is sent (for a request with a body: from the end
 * of the client's body, so a slow upload is not cut); `idleMs` from the last body chunk.
 */
class Attempt implements Dispatcher.DispatchHandler {
  private timer: NodeJS.Timeout | null = null;
  private controller: Dispatcher.DispatchController | null = null;
  private readonly onTimer = (): void => {
    this.timer = null;
    this.controller?.abort(this.ex.res.headersSent ? BODY_STALLED : NO_HEADERS);
  };

  constructor(
    private readonly fw: UndiciForwarder,
    private readonly ex: Exchange,
    private readonly upstream: Upstream,
  ) {
    if (!ex.hasBody || ex.req.readableEnded) this.arm(fw.timeouts.responseMs);
    else ex.req.once('end', () => this.controller !== null && !ex.settled && this.arm(fw.timeouts.responseMs));
  }

  private arm(ms: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(this.onTimer, ms);
  }

  private disarm(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.ex.cancel = controller;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: informational, the final answer follows
    this.arm(this.fw.timeouts.idleMs);
    const ex = this.ex;
    const out: string[] = [];
    let hasRequestId = false;
    let eventStream = false;
    let cacheable = false;
    for (const key in headers) {
      if (isHopByHop(key)) continue;
      const value = headers[key]!;
      if (key.length === 13 && key === 'cache-control') cacheable = sharedCacheable(value);
      if (typeof value === 'string') {
        if (key.length === 12) {
          if (key === 'x-request-id') hasRequestId = true;
          else if (key === 'content-type' && value.startsWith('text/event-stream')) eventStream = true;
        }
        out.push(key, value);
      } else for (let i = 0; i < value.length; i++) out.push(key, value[i]!);
    }
    this.fw.events.responseStarted(ex, statusCode, eventStream);
    if (!hasRequestId) out.push('x-request-id', ex.req.headers['x-request-id'] as string);
    appendProxyResponseHeaders(ex, this.upstream, out, cacheable);
    if (this.fw.closing()) out.push('connection', 'close');
    ex.res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.timer?.refresh();
    const res = this.ex.res;
    if (res.write(chunk)) return;
    // Back-pressure: undici stops reading from the instance until the client caught up. A slow
    // client is not a stalled instance: the idle clock stops meanwhile.
    controller.pause();
    this.disarm();
    res.once('drain', () => {
      this.arm(this.fw.timeouts.idleMs);
      controller.resume();
    });
  }

  onResponseEnd(): void {
    this.disarm();
    this.ex.settled = true;
    this.ex.cancel = null;
    this.ex.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.disarm();
    const ex = this.ex;
    ex.settled = true;
    ex.cancel = null;
    if (ex.res.destroyed) return; // the client left (we aborted the attempt for it)
    this.fw.events.attemptFailed(ex, err, undiciFailureKind(err));
  }
}

/** Forwarder over one undici Pool per instance (the default engine). */
export class UndiciForwarder implements Forwarder {
  private readonly pools = new Map<Upstream, Pool>();

  constructor(
    readonly events: ForwardEvents,
    readonly timeouts: ProxyTimeouts,
    /** True while the proxy shuts down: responses then carry `Connection: close`. */
    readonly closing: () => boolean,
  ) {}

  private poolFor(u: Upstream): Pool {
    let pool = this.pools.get(u);
    if (pool === undefined) {
      pool = new Pool(u.url, {
        connect: { timeout: this.timeouts.connectMs },
        // Both timed by each Attempt's own timers (precise); undici's coarse ones are off.
        headersTimeout: 0,
        bodyTimeout: 0,
        // Idle pooled sockets close after this, below the app's keepAliveTimeout (see ProxyTimeouts);
        // undici also honours a shorter `Keep-Alive: timeout=N` hint from the app.
        keepAliveTimeout: this.timeouts.upstreamIdleMs,
        keepAliveMaxTimeout: this.timeouts.upstreamIdleMs,
      });
      // A pool-level error must never be unhandled.
      pool.on('connectionError', () => undefined);
      this.pools.set(u, pool);
    }
    return pool;
  }

  forward(ex: Exchange, upstream: Upstream): void {
    const req = ex.req;
    const h = req.headers;
    // undici frames the body itself (chunked when there is no Content-Length).
    if (h['transfer-encoding'] !== undefined) delete h['transfer-encoding'];
    ex.settled = false;
    this.poolFor(upstream).dispatch(
      {
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: h as Record<string, string | string[] | undefined>,
        body: ex.hasBody ? req : null,
      },
      new Attempt(this, ex, upstream),
    );
  }

  forget(upstream: Upstream): void {
    const pool = this.pools.get(upstream);
    if (pool === undefined) return;
    this.pools.delete(upstream);
    // Graceful: requests already sent finish, then the connections close.
    pool.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }
}
