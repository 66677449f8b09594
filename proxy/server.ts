/**
 * The request path: pick an instance (affinity cookie first, else balancing), rewrite the
 * forwarding headers, proxy through http-proxy-3 over a keep-alive agent, and turn every upstream
 * failure into a JSON answer (502 / 503 / 504) or a cut response, never a crash or a hung request.
 *
 * Hot path rules: nothing is logged per request; the only per-request allocation of our own is one
 * `Exchange`; every listener is created once and shared (state travels on the request).
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import { findAffinityCookie, verifyAffinity } from './affinity.ts';
import type { ResolvedProxyConfig } from './config.ts';
import { NO_INSTANCE, type ProxyMetrics } from './metrics.ts';
import type { UpstreamPool } from './pool.ts';
import type { Upstream } from './upstream.ts';

/** Per-request state, carried on the request object under `kExchange`. */
class Exchange {
  upstream: Upstream | null = null;
  /** The response must carry a new affinity cookie (no valid one came in, or it was re-pinned). */
  setAffinity = false;
  /** Name of the instance the client was pinned to when it had to be moved. */
  repinnedFrom: string | null = null;
  readonly start: number;
  readonly upload: boolean;
  constructor(start: number, upload: boolean) {
    this.start = start;
    this.upload = upload;
  }
}

const kExchange = Symbol('lockstep.exchange');
type CarryingRequest = http.IncomingMessage & { [kExchange]?: Exchange };

/** Raised on the upstream request when it was silent for `timeouts.upstreamMs`. */
class UpstreamTimeoutError extends Error {
  readonly code = 'LOCKSTEP_UPSTREAM_TIMEOUT';
}

function onUpstreamTimeout(this: http.ClientRequest): void {
  this.destroy(new UpstreamTimeoutError('upstream did not answer in time'));
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

export class RequestPath {
  readonly server: http.Server;
  readonly agent: http.Agent;
  private readonly proxy: ProxyServer;
  private readonly cookiePrefix: string;
  /** Requests received and not yet closed, proxied or not: what shutdown waits for. */
  private active = 0;
  private closing = false;
  private idleResolvers: Array<() => void> = [];
  private readonly onResponseClose: (this: http.ServerResponse) => void;

  constructor(
    private readonly pool: UpstreamPool,
    private readonly metrics: ProxyMetrics,
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
    this.proxy = createProxyServer({ agent: this.agent, xfwd: false, ws: false, prependPath: false });
    // The process must never die on an upstream or client socket error: this listener is mandatory.
    this.proxy.on('error', (err, req, res) => this.onProxyError(err as NodeJS.ErrnoException, req, res));
    this.proxy.on('proxyReq', (proxyReq) => {
      proxyReq.setTimeout(this.config.timeouts.upstreamMs, onUpstreamTimeout);
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
    // A client that sends garbage or resets must not take the process down either.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (socket.writable && !socket.destroyed && err.code !== 'ECONNRESET') {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      } else socket.destroy();
    });
  }

  /** Requests currently open on the public listener. */
  get activeRequests(): number {
    return this.active;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ex = new Exchange(performance.now(), req.method === 'POST' && this.isUploadPath(req.url));
    (req as CarryingRequest)[kExchange] = ex;
    this.active++;
    res.once('close', this.onResponseClose);

    let upstream: Upstream | undefined;
    const cookie = findAffinityCookie(req.headers.cookie, this.cookiePrefix);
    if (cookie !== undefined) {
      const name = verifyAffinity(cookie, this.pool.signatureOf);
      if (name !== undefined) {
        const pinned = this.pool.get(name);
        // A draining instance still serves the clients pinned to it: their session data is there.
        if (pinned !== undefined && pinned.healthy && pinned.state !== 'disabled') upstream = pinned;
        else ex.repinnedFrom = name;
      }
    }
    if (upstream === undefined) {
      upstream = this.pool.pickForNewRequest();
      ex.setAffinity = true;
      if (upstream === undefined) {
        this.sendError(res, 503, BODY_503);
        return;
      }
    }
    ex.upstream = upstream;
    upstream.acquire();
    this.rewriteRequestHeaders(req);
    this.proxy.web(req, res, upstream.proxyOptions);
  }

  private isUploadPath(url: string | undefined): boolean {
    if (url === undefined) return false;
    const q = url.indexOf('?');
    return this.config.uploadPaths.has(q < 0 ? url : url.slice(0, q));
  }

  private rewriteRequestHeaders(req: http.IncomingMessage): void {
    const h = req.headers;
    dropConnectionHeaders(h);
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

  private onProxyRes(proxyRes: http.IncomingMessage, req: http.IncomingMessage, res: http.ServerResponse): void {
    const ex = (req as CarryingRequest)[kExchange];
    const h = proxyRes.headers;
    dropConnectionHeaders(h);
    // Set explicitly, because http-proxy-3 would otherwise copy the request's (removed) value.
    h.connection = res.shouldKeepAlive && !this.closing ? 'keep-alive' : 'close';
    if (h['x-request-id'] === undefined) h['x-request-id'] = req.headers['x-request-id'];
    if (ex === undefined || ex.upstream === null) return;
    if (ex.setAffinity) {
      // Appended as one more header line: the app's own cookies stay separate and untouched.
      const cookies = h['set-cookie'];
      if (cookies === undefined) h['set-cookie'] = [ex.upstream.affinitySetCookie];
      else cookies.push(ex.upstream.affinitySetCookie);
    }
    if (ex.repinnedFrom !== null) h['x-lockstep-repinned'] = `${ex.repinnedFrom} -> ${ex.upstream.name}`;
  }

  private onProxyError(err: NodeJS.ErrnoException, req: http.IncomingMessage, res: http.ServerResponse | import('node:net').Socket): void {
    if (!(res instanceof http.ServerResponse)) {
      res.destroy();
      return;
    }
    const ex = (req as CarryingRequest)[kExchange];
    const name = ex?.upstream?.name ?? NO_INSTANCE;
    const timedOut = err instanceof UpstreamTimeoutError;
    const kind = timedOut ? 'timeout' : err.code !== undefined && CONNECT_ERRORS.has(err.code) ? 'connect' : 'reset';
    if (res.destroyed || res.writableEnded) return; // the client is gone; nothing to answer
    this.metrics.upstreamError(name, kind);
    if (res.headersSent) {
      // Part of the response already went out: the only honest signal left is to cut it.
      res.destroy();
      return;
    }
    this.sendError(res, timedOut ? 504 : 502, timedOut ? BODY_504 : BODY_502);
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
    const ex = (res.req as CarryingRequest)[kExchange];
    this.active--;
    if (ex !== undefined) {
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
   * Stop accepting, let open requests finish for up to `graceMs`, then cut what is left.
   * @param graceMs bound on the wait, ms.
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    if (this.active > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.idleResolvers.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.server.closeAllConnections();
    await closed;
    this.agent.destroy();
  }
}
