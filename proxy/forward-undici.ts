/**
 * Forwarding over undici connection pools, one per instance: the default engine. undici's HTTP/1.1
 * client parses responses with llhttp and hands over raw header lists, so a response is relayed
 * with one `writeHead` of a flat header array (every Set-Cookie stays its own line) and its body
 * chunks written as they arrive, with back-pressure (a slow client pauses the upstream read).
 * WebSocket upgrades go through http-proxy-3 (`forward-http-proxy.ts`).
 *
 * Uses undici's handler-object dispatch API (onConnect/onHeaders/onData/onComplete/onError): it is
 * what undici runs natively; the newer controller API is a wrapper around it that parses every
 * header list into an object, work the proxy does not need.
 */
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { ProxyTimeouts } from './config.ts';
import { appendProxyResponseHeaders, type Exchange, type FailureKind, type ForwardEvents, type Forwarder } from './exchange.ts';
import { HttpProxyForwarder } from './forward-http-proxy.ts';
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

/** Response headers that describe the upstream connection, not the message: never relayed. */
function isHopByHop(key: string): boolean {
  switch (key.length) {
    case 2:
      return key.toLowerCase() === 'te';
    case 7: {
      const k = key.toLowerCase();
      return k === 'trailer' || k === 'upgrade';
    }
    case 10: {
      const k = key.toLowerCase();
      return k === 'connection' || k === 'keep-alive';
    }
    case 16:
      return key.toLowerCase() === 'proxy-connection';
    case 17:
      return key.toLowerCase() === 'transfer-encoding';
    default:
      return false;
  }
}

/** One attempt of one request: the undici handler. Stale once it completed or failed. */
class Attempt implements Dispatcher.DispatchHandler {
  private resume: (() => void) | null = null;

  constructor(
    private readonly fw: UndiciForwarder,
    private readonly ex: Exchange,
    private readonly upstream: Upstream,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.ex.cancel = abort;
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx: informational, the final answer follows
    const ex = this.ex;
    const res = ex.res;
    const out: string[] = [];
    let hasRequestId = false;
    let eventStream = false;
    for (let i = 0; i < raw.length; i += 2) {
      const key = raw[i]!.toString('latin1');
      if (isHopByHop(key)) continue;
      const value = raw[i + 1]!.toString('latin1');
      if (key.length === 12) {
        const k = key.toLowerCase();
        if (k === 'x-request-id') hasRequestId = true;
        else if (k === 'content-type' && value.startsWith('text/event-stream')) eventStream = true;
      }
      out.push(key, value);
    }
    this.fw.events.responseStarted(ex, statusCode, eventStream);
    if (!hasRequestId) out.push('x-request-id', ex.req.headers['x-request-id'] as string);
    appendProxyResponseHeaders(ex, this.upstream, out);
    if (this.fw.closing()) out.push('connection', 'close');
    res.writeHead(statusCode, out);
    this.resume = resume;
    return true;
  }

  onData(chunk: Buffer): boolean {
    const res = this.ex.res;
    if (res.write(chunk)) return true;
    // Back-pressure: undici stops reading from the instance until the client caught up.
    res.once('drain', this.resume!);
    return false;
  }

  onComplete(): void {
    this.ex.settled = true;
    this.ex.cancel = null;
    this.ex.res.end();
  }

  onError(err: Error): void {
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
  private readonly upgrades: HttpProxyForwarder;

  constructor(
    readonly events: ForwardEvents,
    private readonly timeouts: ProxyTimeouts,
    /** True while the proxy shuts down: responses then carry `Connection: close`. */
    readonly closing: () => boolean,
  ) {
    this.upgrades = new HttpProxyForwarder(events, timeouts, closing);
  }

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

  upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, upstream: Upstream): void {
    this.upgrades.upgrade(req, socket, head, upstream);
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
    await this.upgrades.close();
  }
}
