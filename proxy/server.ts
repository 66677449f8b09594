/**
 * The request path: pick an instance (affinity cookie first, else balancing), hold requests pinned
 * to an instance that drains for a restart, set the forwarding headers, hand the request to the
 * forwarder (undici by default, http-proxy-3 optionally), retry what is safe to retry, and turn
 * every upstream failure into a JSON answer (502 / 503 / 504) or a cut response: never a crash,
 * never a hung request.
 *
 * Hot path rules: nothing is logged per request; one `Exchange` (and one forwarder attempt) per
 * request; listeners are created once and shared, with the state travelling on the request.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { findAffinityCookie, verifyAffinity } from './affinity.ts';
import type { ResolvedProxyConfig } from './config.ts';
import type { PassiveEjector } from './ejection.ts';
import { Exchange, IDEMPOTENT, type FailureKind, type ForwardEvents, type Forwarder } from './exchange.ts';
import { HttpProxyForwarder } from './forward-http-proxy.ts';
import { UndiciForwarder } from './forward-undici.ts';
import { dropConnectionHeaders, setForwardedHeaders } from './headers.ts';
import { HoldQueue, type Held } from './drain.ts';
import { NO_INSTANCE, type ProxyMetrics } from './metrics.ts';
import { AccessLog } from './access-log.ts';
import type { UpstreamPool } from './pool.ts';
import type { Upstream } from './upstream.ts';
import { LongLivedStreams } from './streams.ts';
import { WebSocketTunnels, writeUpgradeError, type UpgradeEvents } from './websocket.ts';

const kExchange = Symbol('lockstep.exchange');
type CarryingResponse = http.ServerResponse & { [kExchange]?: Exchange };
const kUpgrade = Symbol('lockstep.upgrade');
/** One client's upgrade request on its way: where it is sent, how often it was tried. */
interface PendingUpgrade {
  req: http.IncomingMessage;
  head: Buffer;
  upstream: Upstream;
  attempts: number;
  failed: Upstream[];
}
type CarryingSocket = Duplex & { [kUpgrade]?: PendingUpgrade };

function jsonError(status: number, error: string, message: string): Buffer {
  return Buffer.from(JSON.stringify({ error, message, status }));
}

// Precomputed: failures are exactly when the proxy must stay cheap.
const BODY_502 = jsonError(502, 'bad_gateway', 'the upstream instance failed to answer (connection refused or reset)');
const BODY_503 = jsonError(503, 'no_instance_available', 'no healthy instance is available to serve this request');
const BODY_504 = jsonError(504, 'gateway_timeout', 'the upstream instance did not answer in time');

/** Raised into an upstream attempt when its client went away. */
class ClientGoneError extends Error {
  readonly code = 'LOCKSTEP_CLIENT_GONE';
}
const CLIENT_GONE = new ClientGoneError('the client closed the connection');

function noop(): void {}

/** The public listener and everything between a client request and a forwarder (see the module comment). */
export class RequestPath implements ForwardEvents, UpgradeEvents {
  readonly server: http.Server;
  private readonly forwarder: Forwarder;
  private readonly upgrades: WebSocketTunnels;
  private readonly cookiePrefix: string;
  private readonly holds: HoldQueue<Exchange>;
  /** Requests received and not yet closed, proxied or not: what shutdown waits for. */
  private active = 0;
  private closing = false;
  private idleResolvers: Array<() => void> = [];
  private readonly onResponseClose: (this: http.ServerResponse) => void;
  /** One JSON line per sampled request, written off the request path (access-log.ts); null when off. */
  private readonly accessLog: AccessLog | null;
  /** Upgraded (WebSocket) connections, closed at shutdown. */
  private readonly tunnels = new Set<Duplex>();
  /** Long-lived streams (SSE responses, WebSockets) per instance, closed at a drain deadline. */
  private readonly streams = new LongLivedStreams();

  constructor(
    private readonly pool: UpstreamPool,
    private readonly metrics: ProxyMetrics,
    private readonly ejector: PassiveEjector,
    private readonly config: ResolvedProxyConfig,
  ) {
    this.cookiePrefix = `${config.affinityCookieName}=`;
    this.accessLog = config.accessLog ? new AccessLog(config.accessLog) : null;
    this.holds = new HoldQueue(config.hold);
    const closing = (): boolean => this.closing;
    this.forwarder =
      config.engine === 'http-proxy-3'
        ? new HttpProxyForwarder(this, config.timeouts, closing)
        : new UndiciForwarder(this, config.timeouts, closing);
    this.upgrades = new WebSocketTunnels(this, config.timeouts);

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

  /** An instance left the pool: its connections close once idle. */
  forget(u: Upstream): void {
    this.forwarder.forget(u);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const h = req.headers;
    const hasBody = h['content-length'] !== undefined ? h['content-length'] !== '0' : h['transfer-encoding'] !== undefined;
    const method = req.method ?? 'GET';
    const ex = new Exchange(req, res, performance.now(), method === 'POST' && this.isUploadPath(req.url), hasBody, !hasBody && IDEMPOTENT.has(method));
    (res as CarryingResponse)[kExchange] = ex;
    this.active++;
    // 'close' fires once; `on` avoids the wrapper `once` allocates per call.
    res.on('close', this.onResponseClose);
    dropConnectionHeaders(h);
    // Node already answered "100 Continue" to the client; the upstream gets the body without asking.
    if (h.expect !== undefined) delete h.expect;
    setForwardedHeaders(req, this.config.trustedProxies);

    const cookie = findAffinityCookie(h.cookie, this.cookiePrefix);
    if (cookie !== undefined) {
      const name = verifyAffinity(cookie, this.pool.signatureOf);
      if (name !== undefined) {
        ex.pinned = this.pool.get(name) ?? null;
        if (ex.pinned === null) ex.repinnedFrom = name;
      }
    }
    this.route(ex);
  }

  /** Send to the pinned instance, hold for it, or choose a new one. Also resumes held requests. */
  private route(ex: Exchange): void {
    const pinned = ex.pinned;
    if (pinned !== null) {
      if (pinned.servesPinned) return this.dispatch(ex, pinned);
      if (!this.closing && this.holds.mayHold(pinned) && this.pool.get(pinned.name) === pinned) {
        ex.held = this.holds.add(pinned, ex, this.onHoldExpired);
        return;
      }
      // Its instance cannot serve it now: the client moves, and is told so.
      ex.repinnedFrom = pinned.name;
      ex.pinned = null;
    }
    const upstream = this.pool.pickForNewRequest(ex.failed);
    ex.setAffinity = true;
    if (upstream === undefined) return this.sendError(ex.res, 503, BODY_503);
    this.dispatch(ex, upstream);
  }

  private readonly onHoldExpired = (held: Held<Exchange>): void => {
    const ex = held.payload;
    if (ex.res.destroyed) return;
    ex.held = null;
    ex.repinnedFrom = held.upstream.name;
    ex.pinned = null;
    this.route(ex);
  };

  /** The instance may serve its pinned clients again (or is gone for good): resume what waits for it. */
  private releaseHeld(u: Upstream): void {
    for (const held of this.holds.takeAll(u)) {
      const ex = held.payload;
      if (ex.res.destroyed) continue;
      ex.held = null;
      // Re-resolve by name: a reload may have replaced the instance's object with a new one.
      ex.pinned = this.pool.get(u.name) ?? null;
      if (ex.pinned === null) ex.repinnedFrom = u.name;
      this.route(ex);
    }
  }

  private dispatch(ex: Exchange, upstream: Upstream): void {
    ex.upstream = upstream;
    ex.attempts++;
    ex.attemptStart = performance.now();
    upstream.acquire();
    this.forwarder.forward(ex, upstream);
  }

  private isUploadPath(url: string | undefined): boolean {
    if (url === undefined) return false;
    const q = url.indexOf('?');
    return this.config.uploadPaths.has(q < 0 ? url : url.slice(0, q));
  }

  /** ForwardEvents: the instance answered. */
  responseStarted(ex: Exchange, statusCode: number, eventStream: boolean): void {
    const u = ex.upstream;
    if (u === null) return;
    if (statusCode >= 500) this.ejector.recordFailure(u);
    else this.ejector.recordSuccess(u);
    if (eventStream) {
      ex.streaming = true;
      this.streams.add(u, ex);
    }
  }

  /**
   * Close the long-lived streams (SSE, WebSockets) on `u` cleanly (see streams.ts). Used at a drain
   * deadline: these never finish by themselves.
   * @returns how many were closed.
   */
  closeStreams(u: Upstream): number {
    return this.streams.closeAll(u);
  }

  /** ForwardEvents: the attempt failed; answer, retry, or cut. */
  attemptFailed(ex: Exchange, err: Error, kind: FailureKind): void {
    const res = ex.res;
    if (res.destroyed || res.writableEnded) return; // the client is gone; nothing to answer
    const upstream = ex.upstream;
    this.metrics.upstreamError(upstream?.name ?? NO_INSTANCE, kind);
    if (upstream !== null) {
      this.ejector.recordFailure(upstream);
      if (kind === 'timeout') {
        const body = res.headersSent;
        this.logTimeout(upstream, body ? 'body' : 'response', performance.now() - ex.attemptStart, body ? this.config.timeouts.idleMs : this.config.timeouts.responseMs);
      }
    }
    if (res.headersSent) {
      // Part of the response already went out: the only honest signal left is to cut it.
      res.destroy();
      return;
    }
    if (upstream !== null && this.retry(ex, upstream, kind)) return;
    // A connect timeout is a connect failure (retryable) but, when it is final, a timeout for the client.
    const code = (err as { code?: string }).code;
    const timedOut = kind === 'timeout' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'LOCKSTEP_CONNECT_TIMEOUT';
    this.sendError(res, timedOut ? 504 : 502, timedOut ? BODY_504 : BODY_502);
  }

  /**
   * Send a failed request to another instance when that is safe: the connection failed before
   * anything was sent (any method; the forwarders read the body only once connected), or the request
   * is idempotent without a body. Never after a timeout (a slow instance must not get its load
   * doubled) and never beyond `retries.maxAttempts`.
   * @returns true when the request was re-dispatched.
   */
  private retry(ex: Exchange, failed: Upstream, kind: FailureKind): boolean {
    if (ex.attempts >= this.config.retries.maxAttempts || kind === 'timeout') return false;
    if (kind === 'reset' && !ex.replayable) return false;
    (ex.failed ??= []).push(failed);
    const next = this.pool.pickForNewRequest(ex.failed);
    if (next === undefined) return false;
    this.metrics.retry(failed.name);
    failed.release();
    ex.upstream = null;
    if (ex.pinned === failed || !ex.setAffinity) {
      ex.repinnedFrom = failed.name;
      ex.pinned = null;
    }
    ex.setAffinity = true;
    this.dispatch(ex, next);
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
      writeUpgradeError(socket, 503, BODY_503);
      return;
    }
    setForwardedHeaders(req, this.config.trustedProxies);
    const pending: PendingUpgrade = { req, head, upstream, attempts: 0, failed: [] };
    (socket as CarryingSocket)[kUpgrade] = pending;
    this.tunnels.add(socket);
    socket.once('close', () => {
      pending.upstream.release();
      this.tunnels.delete(socket);
      this.streams.remove(pending.upstream, socket);
    });
    this.sendUpgrade(socket, pending, upstream);
  }

  /** One attempt of an upgrade. A WebSocket is in flight on its instance while open: a drain waits for it. */
  private sendUpgrade(socket: Duplex, pending: PendingUpgrade, upstream: Upstream): void {
    pending.upstream = upstream;
    pending.attempts++;
    upstream.acquire();
    this.streams.add(upstream, socket);
    this.upgrades.forward(pending.req, socket, pending.head, upstream);
  }

  /** UpgradeEvents: the instance answered the upgrade (101, or a plain HTTP answer relayed as is). */
  upgradeAnswered(upstream: Upstream, statusCode: number): void {
    if (statusCode >= 500) this.ejector.recordFailure(upstream);
    else this.ejector.recordSuccess(upstream);
  }

  /**
   * UpgradeEvents: the upgrade failed before anything reached the client. Retried on another
   * instance when the instance refused or dropped the connection (an upgrade is a GET; nothing was
   * relayed), within `retries.maxAttempts`; never after a timeout. Else 502 (504 after a timeout).
   */
  upgradeFailed(socket: Duplex, upstream: Upstream, err: Error, kind: FailureKind, elapsedMs: number): void {
    const pending = (socket as CarryingSocket)[kUpgrade];
    if (pending === undefined || pending.upstream !== upstream) return;
    this.metrics.upstreamError(upstream.name, kind);
    this.ejector.recordFailure(upstream);
    if (kind === 'timeout') this.logTimeout(upstream, 'upgrade', elapsedMs, this.config.timeouts.responseMs);
    if (kind !== 'timeout' && pending.attempts < this.config.retries.maxAttempts && !this.closing) {
      pending.failed.push(upstream);
      const next = this.pool.pickForNewRequest(pending.failed);
      if (next !== undefined) {
        this.metrics.retry(upstream.name);
        upstream.release();
        this.streams.remove(upstream, socket);
        this.sendUpgrade(socket, pending, next);
        return;
      }
    }
    const timedOut = kind === 'timeout' || (err as { code?: string }).code === 'LOCKSTEP_CONNECT_TIMEOUT';
    writeUpgradeError(socket, timedOut ? 504 : 502, timedOut ? BODY_504 : BODY_502);
  }

  /**
   * Log an upstream timeout, once per timed-out attempt (the request path's only per-request log:
   * a timeout is rare and an operator needs it).
   * @param phase `response` (no headers in time), `body` (stalled mid-body), `upgrade` (no answer
   *   to a WebSocket upgrade).
   */
  private logTimeout(upstream: Upstream, phase: 'response' | 'body' | 'upgrade', elapsedMs: number, timeoutMs: number): void {
    this.config.logger.warn({ instance: upstream.name, phase, elapsedMs: Math.round(elapsedMs), timeoutMs }, 'upstream timed out');
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
    const ex = (res as CarryingResponse)[kExchange];
    this.active--;
    if (ex !== undefined) {
      if (ex.held !== null) {
        this.holds.remove(ex.held);
        ex.held = null;
      }
      const aborted = !res.writableFinished;
      // The client left mid-way: stop the upstream request too, freeing its connection.
      if (aborted && ex.cancel !== null && !ex.settled) ex.cancel.abort(CLIENT_GONE);
      const u = ex.upstream;
      if (u !== null) {
        u.release();
        if (ex.streaming) this.streams.remove(u, ex);
      }
      this.metrics.observeRequest(u === null ? NO_INSTANCE : u.name, res.statusCode, (performance.now() - ex.start) / 1000, aborted, ex.upload);
      this.accessLog?.record(ex.req.method, ex.req.url, res.statusCode, u === null ? NO_INSTANCE : u.name, performance.now() - ex.start, ex.req.headers['x-request-id']);
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
    this.upgrades.close();
    for (const t of this.tunnels) t.destroy();
    await closed;
    await this.forwarder.close();
    await this.accessLog?.close();
  }
}
