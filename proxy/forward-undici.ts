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
import { appendProxyResponseHeaders, type Exchange, type FailureKind, type ForwardEvents, type Forwarder } from './exchange.ts';
import type { Upstream } from './upstream.ts';

const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

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

/** One attempt of one request: the undici handler. Stale once it completed or failed. */
class Attempt implements Dispatcher.DispatchHandler {
  constructor(
    private readonly fw: UndiciForwarder,
    private readonly ex: Exchange,
    private readonly upstream: Upstream,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.ex.cancel = controller;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: informational, the final answer follows
    const ex = this.ex;
    const out: string[] = [];
    let hasRequestId = false;
    let eventStream = false;
    for (const key in headers) {
      if (isHopByHop(key)) continue;
      const value = headers[key]!;
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
    appendProxyResponseHeaders(ex, this.upstream, out);
    if (this.fw.closing()) out.push('connection', 'close');
    ex.res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.ex.res;
    if (res.write(chunk)) return;
    // Back-pressure: undici stops reading from the instance until the client caught up.
    controller.pause();
    res.once('drain', () => controller.resume());
  }

  onResponseEnd(): void {
    this.ex.settled = true;
    this.ex.cancel = null;
    this.ex.res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
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
    private readonly timeouts: ProxyTimeouts,
    /** True while the proxy shuts down: responses then carry `Connection: close`. */
    readonly closing: () => boolean,
  ) {}

  private poolFor(u: Upstream): Pool {
    let pool = this.pools.get(u);
    if (pool === undefined) {
      pool = new Pool(u.url, {
        connect: { timeout: this.timeouts.connectMs },
        headersTimeout: this.timeouts.responseMs,
        bodyTimeout: this.timeouts.idleMs,
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
