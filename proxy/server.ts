/**
 * The request path: pick an instance (affinity cookie first, else balancing), hold requests pinned
 * to an instance that drains for a restart, rewrite the forwarding headers, proxy through
 * http-proxy-3 over a keep-alive agent, retry what is safe to retry, and turn every upstream failure
 * into a JSON answer (502 / 503 / 504) or a cut response: never a crash, never a hung request.
 *
 * Hot path rules: nothing is logged per request; the only per-request allocation of our own is one
 * `Exchange` (plus a body gate for requests with a body); every listener is created once and shared,
 * with the state travelling on the request.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import { findAffinityCookie, verifyAffinity } from './affinity.ts';
import type { ResolvedProxyConfig } from './config.ts';
import type { PassiveEjector } from './ejection.ts';
import { HoldQueue, type Held } from './hold.ts';
import { NO_INSTANCE, type ProxyMetrics } from './metrics.ts';
import type { UpstreamPool } from './pool.ts';
import type { Upstream } from './upstream.ts';

/** Methods that may be sent twice (RFC 9110 section 9.2.2): only these are retried after being sent. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Per-request state, carried on the request object under `kExchange`. */
class Exchange {
  upstream: Upstream | null = null;
  /** The instance the client's valid affinity cookie names, if any. */
  pinned: Upstream | null = null;
  /** The response must carry a new affinity cookie (no valid one came in, or it was re-pinned). */
  setAffinity = false;
  /** Name of the instance the client was pinned to when it had to be moved. */
  repinnedFrom: string | null = null;
  proxyReq: http.ClientRequest | null = null;
  attempts = 0;
  /** Instances that failed this request (excluded from retries); null until the first failure. */
  failed: Upstream[] | null = null;
  held: Held<http.ServerResponse> | null = null;
  readonly start: number;
  readonly upload: boolean;
  readonly hasBody: boolean;
  /** Safe to send again after it reached an instance: idempotent and no body to replay. */
  readonly replayable: boolean;
  constructor(start: number, upload: boolean, hasBody: boolean, replayable: boolean) {
    this.start = start;
    this.upload = upload;
    this.hasBody = hasBody;
    this.replayable = replayable;
  }
}

const kExchange = Symbol('lockstep.exchange');
type CarryingRequest = http.IncomingMessage & { [kExchange]?: Exchange };

function exchangeOf(req: http.IncomingMessage): Exchange | undefined {
  return (req as CarryingRequest)[kExchange];
}

/** The instance went silent for `responseMs` (before the response) or `idleMs` (during the body). */
class UpstreamTimeoutError extends Error {
  readonly code = 'LOCKSTEP_UPSTREAM_TIMEOUT';
}
/** The connection to the instance was not established within `connectMs`: nothing was sent. */
class ConnectTimeoutError extends Error {
  readonly code = 'LOCKSTEP_CONNECT_TIMEOUT';
}

function onUpstreamTimeout(this: http.ClientRequest): void {
  if (this.socket?.connecting) this.destroy(new ConnectTimeoutError('could not connect to the instance in time'));
  else this.destroy(new UpstreamTimeoutError('the instance did not answer in time'));
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

function jsonError(status: number, error: string, message: string): Buffer {
  return Buffer.from(JSON.stringify({ error, message, status }));
}

// Precomputed: failures are exactly when the proxy must stay cheap.
const BODY_502 = jsonError(502, 'bad_gateway', 'the upstream instance failed to answer (connection refused or reset)');
const BODY_503 = jsonError(503, 'no_instance_available', 'no healthy instance is available to serve this request');
const BODY_504 = jsonError(504, 'gateway_timeout', 'the upstream instance did not answer in time');

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);

/** Headers that describe one connection, not the message (RFC 9110 section 7.6.1), dropped in both directions. */
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'] as const;

function dropConnectionHeaders(h: http.IncomingHttpHeaders): void {
  const conn = h.connection;
  if (conn !== undefined) {
    // Tokens other than the usual two name further per-connection headers to drop.
    if (conn !== 'keep-alive' && conn !== 'close') {
      for (const token of conn.split(',')) {
        const name = token.trim().toLowerCase();
        if (name !== '' && name !== 'close' && name !== 'keep-alive') delete h[name];
      }
    }
    delete h.connection;
  }
  for (let i = 0; i < HOP_BY_HOP.length; i++) {
    const name = HOP_BY_HOP[i]!;
    if (h[name] !== undefined) delete h[name];
  }
}

function noop(): void {}

export class RequestPath {
  readonly server: http.Server;
  readonly agent: http.Agent;
  private readonly proxy: ProxyServer;
  private readonly cookiePrefix: string;
  private readonly holds = new HoldQueue<http.ServerResponse>();
  /** Requests received and not yet closed, proxied or not: what shutdown waits for. */
  private active = 0;
  private closing = false;
  private idleResolvers: Array<() => void> = [];
  private readonly onResponseClose: (this: http.ServerResponse) => void;
  /** Upgraded (WebSocket) connections, closed at shutdown. */
  private readonly tunnels = new Set<Duplex>();

  constructor(
    private readonly pool: UpstreamPool,
    private readonly metrics: ProxyMetrics,
    private readonly ejector: PassiveEjector,
    private readonly config: ResolvedProxyConfig,
  ) {
    this.cookiePrefix = `${config.affinityCookieName}=`;
    this.agent = new http.Agent({
      keepAlive: true,
      keepAliveMsecs: 1000,
      // Idle pooled sockets close after this (below the app's keepAliveTimeout; see ProxyTimeouts).
      timeout: config.timeouts.upstreamIdleMs,
      maxFreeSockets: 512,
      // LIFO reuses the most recently used socket: the one least likely to be closing on the app side.
      scheduling: 'lifo',
    });
    this.proxy = createProxyServer({ agent: this.agent, xfwd: false, ws: true, prependPath: false });
    // The process must never die on an upstream or client socket error: this listener is mandatory.
    this.proxy.on('error', (err, req, res) => this.onProxyError(err as NodeJS.ErrnoException, req, res));
    this.proxy.on('proxyReq', (proxyReq, req, _res, _options, socket) => {
      const ex = exchangeOf(req);
      if (ex !== undefined) ex.proxyReq = proxyReq;
      if (socket.connecting) socket.setTimeout(this.config.timeouts.connectMs);
      proxyReq.setTimeout(this.config.timeouts.responseMs, onUpstreamTimeout);
    });
    this.proxy.on('proxyReqWs', (proxyReq, _req, socket) => {
      proxyReq.setTimeout(this.config.timeouts.responseMs, onUpstreamTimeout);
      socket.on('error', noop);
    });
    this.proxy.on('proxyRes', (proxyRes, req, res) => this.onProxyRes(proxyRes, req, res));

    const self = this;
    this.onResponseClose = function onResponseClose(this: http.ServerResponse): void {
      try {
        self.finishExchange(this);
      } catch (err) {
        // A bug in bookkeeping must cost a metric, not the process.
        self.config.logger.error({ err }, 'request bookkeeping failed');
      }
    };

    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.handleUpgrade(req, socket, head));
    // A client that sends garbage or resets must not take the process down either.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (socket.writable && !socket.destroyed && err.code !== 'ECONNRESET') {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      } else socket.destroy();
    });
    pool.onAvailable = (u) => this.releaseHeld(u);
  }

  /** Requests currently open on the public listener (held ones included). */
  get activeRequests(): number {
    return this.active;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const h = req.headers;
    const hasBody = h['content-length'] !== undefined ? h['content-length'] !== '0' : h['transfer-encoding'] !== undefined;
    const method = req.method ?? 'GET';
    const ex = new Exchange(performance.now(), method === 'POST' && this.isUploadPath(req.url), hasBody, !hasBody && IDEMPOTENT.has(method));
    (req as CarryingRequest)[kExchange] = ex;
    this.active++;
    res.once('close', this.onResponseClose);
    this.rewriteRequestHeaders(req);

    const cookie = findAffinityCookie(h.cookie, this.cookiePrefix);
    if (cookie !== undefined) {
      const name = verifyAffinity(cookie, this.pool.signatureOf);
      if (name !== undefined) ex.pinned = this.pool.get(name) ?? null;
      if (ex.pinned === null && name !== undefined) ex.repinnedFrom = name;
    }
    this.route(req, res, ex);
  }

  /** Send to the pinned instance, hold for it, or choose a new one. Also resumes held requests. */
  private route(req: http.IncomingMessage, res: http.ServerResponse, ex: Exchange): void {
    const pinned = ex.pinned;
    if (pinned !== null) {
      if (pinned.servesPinned) return this.dispatch(req, res, ex, pinned);
      const hold = this.config.hold;
      if (pinned.state === 'draining' && !this.closing && hold.timeoutMs > 0 && pinned.held < hold.maxPerInstance && this.pool.get(pinned.name) === pinned) {
        ex.held = this.holds.add(pinned, res, hold.timeoutMs, this.onHoldExpired);
        return;
      }
      // Its instance cannot serve it now: the client moves, and is told so.
      ex.repinnedFrom = pinned.name;
      ex.pinned = null;
    }
    const upstream = this.pool.pickForNewRequest(ex.failed);
    ex.setAffinity = true;
    if (upstream === undefined) return this.sendError(res, 503, BODY_503);
    this.dispatch(req, res, ex, upstream);
  }

  private readonly onHoldExpired = (held: Held<http.ServerResponse>): void => {
    const res = held.payload;
    const ex = exchangeOf(res.req);
    if (ex === undefined || res.destroyed) return;
    ex.held = null;
    ex.repinnedFrom = held.upstream.name;
    ex.pinned = null;
    this.route(res.req, res, ex);
  };

  /** The instance may serve its pinned clients again (or is gone for good): resume what waits for it. */
  private releaseHeld(u: Upstream): void {
    for (const held of this.holds.takeAll(u)) {
      const res = held.payload;
      const ex = exchangeOf(res.req);
      if (ex === undefined || res.destroyed) continue;
      ex.held = null;
      // Re-resolve by name: a reload may have replaced the instance's object with a new one.
      ex.pinned = this.pool.get(u.name) ?? null;
      if (ex.pinned === null) ex.repinnedFrom = u.name;
      this.route(res.req, res, ex);
    }
  }

  private dispatch(req: http.IncomingMessage, res: http.ServerResponse, ex: Exchange, upstream: Upstream): void {
    ex.upstream = upstream;
    ex.attempts++;
    upstream.acquire();
    if (ex.hasBody) this.proxy.web(req, res, { target: upstream.target, buffer: new BodyGate(req) as unknown as import('node:stream').Stream });
    else this.proxy.web(req, res, upstream.proxyOptions);
  }

  private isUploadPath(url: string | undefined): boolean {
    if (url === undefined) return false;
    const q = url.indexOf('?');
    return this.config.uploadPaths.has(q < 0 ? url : url.slice(0, q));
  }

  private rewriteForwarded(req: http.IncomingMessage): void {
    const h = req.headers;
    const remote = req.socket.remoteAddress ?? '';
    const trusted = this.config.trustedProxies;
    if (trusted !== null && trusted.check(remote, req.socket.remoteFamily === 'IPv6' ? 'ipv6' : 'ipv4')) {
      const prior = h['x-forwarded-for'];
      h['x-forwarded-for'] = prior ? `${prior}, ${remote}` : remote;
      if (h['x-forwarded-proto'] === undefined) h['x-forwarded-proto'] = 'http';
      if (h['x-forwarded-host'] === undefined) h['x-forwarded-host'] = h.host ?? '';
    } else {
      // From an untrusted peer these would be the client's own claims: replace them.
      h['x-forwarded-for'] = remote;
      h['x-forwarded-proto'] = 'http';
      h['x-forwarded-host'] = h.host ?? '';
      if (h.forwarded !== undefined) delete h.forwarded;
    }
    if (h['x-request-id'] === undefined) h['x-request-id'] = randomUUID();
  }

  private rewriteRequestHeaders(req: http.IncomingMessage): void {
    const h = req.headers;
    dropConnectionHeaders(h);
    // Node already answered "100 Continue" to the client; the upstream gets the body without asking.
    if (h.expect !== undefined) delete h.expect;
    this.rewriteForwarded(req);
  }

  private onProxyRes(proxyRes: http.IncomingMessage, req: http.IncomingMessage, res: http.ServerResponse): void {
    const ex = exchangeOf(req);
    const h = proxyRes.headers;
    dropConnectionHeaders(h);
    // Set explicitly, because http-proxy-3 would otherwise copy the request's (removed) value.
    h.connection = res.shouldKeepAlive && !this.closing ? 'keep-alive' : 'close';
    if (h['x-request-id'] === undefined) h['x-request-id'] = req.headers['x-request-id'];
    if (ex === undefined || ex.upstream === null) return;
    // Streaming (SSE, long bodies) is bounded by inactivity, no longer by the wait for headers.
    if (this.config.timeouts.idleMs !== this.config.timeouts.responseMs) ex.proxyReq?.setTimeout(this.config.timeouts.idleMs);
    if ((proxyRes.statusCode ?? 200) >= 500) this.ejector.recordFailure(ex.upstream);
    else this.ejector.recordSuccess(ex.upstream);
    if (ex.setAffinity) {
      // Appended as one more header line: the app's own cookies stay separate and untouched.
      const cookies = h['set-cookie'];
      if (cookies === undefined) h['set-cookie'] = [ex.upstream.affinitySetCookie];
      else cookies.push(ex.upstream.affinitySetCookie);
    }
    if (ex.repinnedFrom !== null && ex.repinnedFrom !== ex.upstream.name) h['x-lockstep-repinned'] = `${ex.repinnedFrom} -> ${ex.upstream.name}`;
  }

  private onProxyError(err: NodeJS.ErrnoException, req: http.IncomingMessage, res: http.ServerResponse | Duplex): void {
    if (!(res instanceof http.ServerResponse)) {
      res.destroy();
      return;
    }
    if (res.destroyed || res.writableEnded) return; // the client is gone; nothing to answer
    const ex = exchangeOf(req);
    const upstream = ex?.upstream ?? null;
    const connectTimeout = err instanceof ConnectTimeoutError;
    const kind = err instanceof UpstreamTimeoutError ? 'timeout' : connectTimeout || (err.code !== undefined && CONNECT_ERRORS.has(err.code)) ? 'connect' : 'reset';
    const name = upstream?.name ?? NO_INSTANCE;
    this.metrics.upstreamError(name, kind);
    if (upstream !== null) this.ejector.recordFailure(upstream);
    if (res.headersSent) {
      // Part of the response already went out: the only honest signal left is to cut it.
      res.destroy();
      return;
    }
    if (ex !== undefined && upstream !== null && this.retry(req, res, ex, upstream, kind)) return;
    if (kind === 'timeout' || connectTimeout) this.sendError(res, 504, BODY_504);
    else this.sendError(res, 502, BODY_502);
  }

  /**
   * Send a failed request to another instance when that is safe: the connection failed before
   * anything was sent (any method; the body gate kept the body unread), or the request is
   * idempotent without a body. Never after a timeout (a slow instance must not get its load
   * doubled) and never beyond `retries.maxAttempts`.
   * @returns true when the request was re-dispatched.
   */
  private retry(req: http.IncomingMessage, res: http.ServerResponse, ex: Exchange, failed: Upstream, kind: 'connect' | 'timeout' | 'reset'): boolean {
    if (ex.attempts >= this.config.retries.maxAttempts || kind === 'timeout') return false;
    if (kind === 'reset' && !ex.replayable) return false;
    (ex.failed ??= []).push(failed);
    const next = this.pool.pickForNewRequest(ex.failed);
    if (next === undefined) return false;
    this.metrics.retry(failed.name);
    failed.release();
    ex.upstream = null;
    ex.proxyReq = null;
    if (ex.pinned === failed || !ex.setAffinity) {
      ex.repinnedFrom = failed.name;
      ex.pinned = null;
    }
    ex.setAffinity = true;
    this.dispatch(req, res, ex, next);
    return true;
  }

  private handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', noop);
    if (this.closing) {
      socket.destroy();
      return;
    }
    const cookie = findAffinityCookie(req.headers.cookie, this.cookiePrefix);
    const name = cookie === undefined ? undefined : verifyAffinity(cookie, this.pool.signatureOf);
    const pinned = name === undefined ? undefined : this.pool.get(name);
    const upstream = pinned !== undefined && pinned.servesPinned ? pinned : this.pool.pickForNewRequest();
    if (upstream === undefined) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n' + BODY_503.toString());
      return;
    }
    // A WebSocket is in flight on its instance for as long as it is open: a drain waits for it.
    upstream.acquire();
    this.tunnels.add(socket);
    socket.once('close', () => {
      upstream.release();
      this.tunnels.delete(socket);
    });
    this.rewriteForwarded(req);
    this.proxy.ws(req, socket, head, upstream.proxyOptions);
  }

  private sendError(res: http.ServerResponse, status: number, body: Buffer): void {
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': body.length,
      'cache-control': 'no-store',
      connection: res.shouldKeepAlive && !this.closing ? 'keep-alive' : 'close',
    });
    res.end(body);
  }

  private finishExchange(res: http.ServerResponse): void {
    const ex = exchangeOf(res.req);
    this.active--;
    if (ex !== undefined) {
      if (ex.held !== null) {
        this.holds.remove(ex.held);
        ex.held = null;
      }
      const u = ex.upstream;
      if (u !== null) u.release();
      this.metrics.observeRequest(
        u === null ? NO_INSTANCE : u.name,
        res.statusCode,
        (performance.now() - ex.start) / 1000,
        !res.writableFinished,
        ex.upload,
      );
    }
    if (this.active === 0 && this.idleResolvers.length > 0) {
      const resolvers = this.idleResolvers;
      this.idleResolvers = [];
      for (const r of resolvers) r();
    }
  }

  /**
   * Stop accepting, resume held requests elsewhere, let open requests finish for up to `graceMs`,
   * then cut what is left (WebSockets included).
   * @param graceMs bound on the wait, ms.
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    for (const u of this.holds.upstreams()) {
      for (const held of this.holds.takeAll(u)) this.onHoldExpired(held);
    }
    if (this.active > 0 || this.tunnels.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.idleResolvers.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.server.closeAllConnections();
    for (const t of this.tunnels) t.destroy();
    await closed;
    this.agent.destroy();
  }
}
