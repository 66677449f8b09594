/**
 * Forwarding through http-proxy-3 over a node:http keep-alive agent: the whole request path with
 * `engine: 'http-proxy-3'`. (WebSocket upgrades go through `websocket.ts` in both engines.)
 * (The default engine, `forward-undici.ts`, is about twice as fast on plain requests: see
 * bench/README.md.)
 */
import http from 'node:http';
import type { Duplex, Stream } from 'node:stream';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import type { ProxyTimeouts } from './config.ts';
import { sharedCacheable, type Exchange, type ForwardEvents, type Forwarder, type FailureKind } from './exchange.ts';
import { dropConnectionHeaders } from './headers.ts';
import type { Upstream } from './upstream.ts';

const kExchange = Symbol('lockstep.exchange');
type CarryingRequest = http.IncomingMessage & { [kExchange]?: Exchange; [kProxyReq]?: http.ClientRequest };
const kProxyReq = Symbol('lockstep.proxyReq');

/** The instance went silent for `responseMs` (before the response) or `idleMs` (during the body). */
export class UpstreamTimeoutError extends Error {
  readonly code = 'LOCKSTEP_UPSTREAM_TIMEOUT';
}
/** The connection to the instance was not established within `connectMs`: nothing was sent. */
export class ConnectTimeoutError extends Error {
  readonly code = 'LOCKSTEP_CONNECT_TIMEOUT';
}

function onUpstreamTimeout(this: http.ClientRequest): void {
  if (this.socket?.connecting) this.destroy(new ConnectTimeoutError('could not connect to the instance in time'));
  else this.destroy(new UpstreamTimeoutError('the instance did not answer in time'));
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

/** Classify a node:http client error. */
export function failureKindOf(err: NodeJS.ErrnoException): FailureKind {
  if (err instanceof UpstreamTimeoutError) return 'timeout';
  if (err instanceof ConnectTimeoutError || (err.code !== undefined && CONNECT_ERRORS.has(err.code))) return 'connect';
  return 'reset';
}

/**
 * Stands in for the request body (http-proxy-3's `buffer` option): the body is piped only once the
 * upstream connection is established, so a request whose connect fails still has its whole body
 * unread and can be retried on another instance, whatever its method.
 */
class BodyGate {
  constructor(private readonly req: http.IncomingMessage) {}
  pipe(dest: http.ClientRequest): http.ClientRequest {
    const req = this.req;
    dest.once('socket', (socket) => {
      if (socket.connecting) socket.once('connect', () => req.pipe(dest));
      else req.pipe(dest);
    });
    return dest;
  }
}


/** Forwarder over http-proxy-3 and a node:http keep-alive agent. */
export class HttpProxyForwarder implements Forwarder {
  readonly agent: http.Agent;
  private readonly proxy: ProxyServer;

  constructor(
    private readonly events: ForwardEvents,
    private readonly timeouts: ProxyTimeouts,
    /** True while the proxy shuts down: responses then carry `Connection: close`. */
    private readonly closing: () => boolean,
  ) {
    this.agent = new http.Agent({
      keepAlive: true,
      keepAliveMsecs: 1000,
      // Headers and body go out as separate writes: Nagle would hold the second one back.
      noDelay: true,
      // Idle pooled sockets close after this (below the app's keepAliveTimeout; see ProxyTimeouts).
      timeout: timeouts.upstreamIdleMs,
      maxFreeSockets: 512,
      // LIFO reuses the most recently used socket: the one least likely to be closing on the app side.
      scheduling: 'lifo',
    });
    this.proxy = createProxyServer({ agent: this.agent, xfwd: false, ws: false, prependPath: false });
    // The process must never die on an upstream or client socket error: this listener is mandatory.
    this.proxy.on('error', (err, req, res) => this.onError(err as NodeJS.ErrnoException, req, res));
    this.proxy.on('proxyReq', (proxyReq, req, _res, _options, socket) => {
      (req as CarryingRequest)[kProxyReq] = proxyReq;
      const ex = (req as CarryingRequest)[kExchange];
      if (ex !== undefined) {
        ex.settled = false;
        ex.cancel = { abort: (err) => proxyReq.destroy(err) };
      }
      if (socket.connecting) socket.setTimeout(this.timeouts.connectMs);
      proxyReq.setTimeout(this.timeouts.responseMs, onUpstreamTimeout);
    });
    this.proxy.on('proxyRes', (proxyRes, req, res) => this.onProxyRes(proxyRes, req, res));
  }

  forward(ex: Exchange, upstream: Upstream): void {
    const req = ex.req as CarryingRequest;
    req[kExchange] = ex;
    if (ex.hasBody) this.proxy.web(req, ex.res, { target: upstream.target, buffer: new BodyGate(req) as unknown as Stream });
    else this.proxy.web(req, ex.res, upstream.proxyOptions);
  }

  forget(): void {
    // The agent's idle sockets to a removed instance time out by themselves.
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }

  private onProxyRes(proxyRes: http.IncomingMessage, req: http.IncomingMessage, res: http.ServerResponse): void {
    const ex = (req as CarryingRequest)[kExchange];
    const h = proxyRes.headers;
    dropConnectionHeaders(h);
    // Set explicitly, because http-proxy-3 would otherwise copy the request's (removed) value.
    h.connection = res.shouldKeepAlive && !this.closing() ? 'keep-alive' : 'close';
    if (h['x-request-id'] === undefined) h['x-request-id'] = req.headers['x-request-id'];
    if (ex === undefined || ex.upstream === null) return;
    // Streaming (SSE, long bodies) is bounded by inactivity, no longer by the wait for headers.
    if (this.timeouts.idleMs !== this.timeouts.responseMs) (req as CarryingRequest)[kProxyReq]?.setTimeout(this.timeouts.idleMs);
    // Kept so a drain deadline can unpipe an SSE stream and end it cleanly. (Destroying a finished
    // upstream request on a late client abort is harmless, so no per-request 'end' listener.)
    ex.upstreamBody = proxyRes;
    const type = h['content-type'];
    this.events.responseStarted(ex, proxyRes.statusCode ?? 502, type !== undefined && type.startsWith('text/event-stream'));
    if (sharedCacheable(h['cache-control'])) return; // nothing per-client on a shared-cacheable answer
    if (ex.setAffinity) {
      // Appended as one more header line: the app's own cookies stay separate and untouched.
      const cookies = h['set-cookie'];
      if (cookies === undefined) h['set-cookie'] = [ex.upstream.affinitySetCookie];
      else cookies.push(ex.upstream.affinitySetCookie);
    }
    if (ex.repinnedFrom !== null && ex.repinnedFrom !== ex.upstream.name) h['x-lockstep-repinned'] = `${ex.repinnedFrom} -> ${ex.upstream.name}`;
  }

  private onError(err: NodeJS.ErrnoException, req: http.IncomingMessage, res: http.ServerResponse | Duplex): void {
    if (!(res instanceof http.ServerResponse)) {
      res.destroy();
      return;
    }
    const ex = (req as CarryingRequest)[kExchange];
    if (ex === undefined) {
      res.destroy();
      return;
    }
    this.events.attemptFailed(ex, err, failureKindOf(err));
  }
}
