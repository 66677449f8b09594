/**
 * WebSocket (and any other HTTP/1.1 upgrade) tunnels, for both engines: one fresh connection to
 * the instance per upgrade, the instance's `101` relayed, then the two sockets spliced.
 *
 * Why not http-proxy-3's `ws()`: it ends (never destroys) the instance's socket when the client
 * goes away and leaves it unpiped and paused, so an instance that closes its side later is never
 * read again and the proxy keeps that file descriptor for ever (issue 13: 1,000 cycles took a proxy
 * from 27 to 537 fds). And a failed upgrade always closed the client socket bare, so it could be
 * neither answered (502/504) nor retried on another instance.
 *
 * Lifecycle rules here: when one side closes, the other is ended and read to its end (so its FIN
 * is seen and it closes), and destroyed after TUNNEL_CLOSE_GRACE_MS whatever happens; an error on
 * either side destroys both. Before the `101`, failures are reported to the request path, which
 * retries (the upgrade is a GET: nothing was relayed to the client yet) or answers 502/504.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ProxyTimeouts } from './config.ts';
import type { FailureKind } from './exchange.ts';
import type { Upstream } from './upstream.ts';

/** How long one side of a tunnel may stay open after the other closed, ms (its close handshake). */
export const TUNNEL_CLOSE_GRACE_MS = 5_000;

/** The instance did not answer the upgrade within `responseMs`. */
export class UpgradeTimeoutError extends Error {
  readonly code = 'LOCKSTEP_UPGRADE_TIMEOUT';
}
/** The connection to the instance was not established within `connectMs`. */
export class UpgradeConnectTimeoutError extends Error {
  readonly code = 'LOCKSTEP_CONNECT_TIMEOUT';
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'LOCKSTEP_CONNECT_TIMEOUT']);

/** What the tunnel reports back to the request path. */
export interface UpgradeEvents {
  /** The instance accepted the upgrade (or answered it with a plain HTTP response, relayed as is). */
  upgradeAnswered(upstream: Upstream, statusCode: number): void;
  /**
   * The upgrade failed before anything was relayed to the client: the client socket is intact, so
   * the path may retry elsewhere or answer. `elapsedMs`: since the attempt started.
   */
  upgradeFailed(client: Duplex, upstream: Upstream, err: Error, kind: FailureKind, elapsedMs: number): void;
}

function noop(): void {}

/** Header block of a response, every value of a repeated header on its own line. */
function headerBlock(statusLine: string, rawHeaders: string[], skip: (lowerName: string) => boolean): string {
  let out = statusLine + '\r\n';
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (skip(rawHeaders[i]!.toLowerCase())) continue;
    out += `${rawHeaders[i]}: ${rawHeaders[i + 1]}\r\n`;
  }
  return out;
}

/**
 * Splice two sockets both ways (see the module comment for the close rules). Exported for tests
 * of the lifecycle; the request path uses `WebSocketTunnels.open`.
 */
export function splice(a: Duplex, b: Duplex, graceMs = TUNNEL_CLOSE_GRACE_MS): void {
  const fail = (): void => {
    a.destroy();
    b.destroy();
  };
  a.on('error', fail);
  b.on('error', fail);
  const closeLater = (other: Duplex): void => {
    if (other.destroyed) return;
    // Ended, and read to its end: its own FIN then closes it (a paused socket would never see it).
    other.end();
    other.resume();
    const timer = setTimeout(() => other.destroy(), graceMs);
    timer.unref();
    other.once('close', () => clearTimeout(timer));
  };
  a.once('close', () => closeLater(b));
  b.once('close', () => closeLater(a));
  a.pipe(b);
  b.pipe(a);
}

/**
 * Answer an upgrade request that will not be tunnelled with a JSON error, then close (after
 * TUNNEL_CLOSE_GRACE_MS at the latest, whatever the client does).
 * @param body the JSON body (the request path's precomputed error bodies).
 */
export function writeUpgradeError(socket: Duplex, status: 502 | 503 | 504, body: Buffer): void {
  if (socket.destroyed) return;
  const reason = status === 502 ? 'Bad Gateway' : status === 503 ? 'Service Unavailable' : 'Gateway Timeout';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n` +
      body.toString(),
  );
  socket.resume();
  const t = setTimeout(() => socket.destroy(), TUNNEL_CLOSE_GRACE_MS);
  t.unref();
  socket.once('close', () => clearTimeout(t));
}

/** Opens upgrade tunnels to instances (see the module comment). */
export class WebSocketTunnels {
  private readonly open = new Set<http.ClientRequest>();

  constructor(
    private readonly events: UpgradeEvents,
    private readonly timeouts: ProxyTimeouts,
  ) {}

  /**
   * Send the upgrade request `req` (headers already forwarded) to `upstream` on a new connection.
   * On `101` the client gets the instance's answer and the tunnel runs until either side closes;
   * on another status the answer is relayed and the client socket ends; on failure before any
   * answer `events.upgradeFailed` decides.
   * @param client the client's socket (from the server's 'upgrade' event); `head` its first bytes.
   */
  forward(req: http.IncomingMessage, client: Duplex, head: Buffer, upstream: Upstream): void {
    const started = performance.now();
    const headers = { ...req.headers };
    // Per-connection headers other than the upgrade itself stay on this hop.
    delete headers['keep-alive'];
    delete headers['proxy-connection'];
    headers.connection = 'Upgrade';
    const out = http.request({
      host: upstream.target.hostname,
      port: upstream.target.port,
      method: req.method,
      path: req.url,
      headers,
      agent: false,
    });
    this.open.add(out);
    let settled = false;
    const failed = (err: Error & { code?: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.open.delete(out);
      out.destroy();
      const kind: FailureKind = err instanceof UpgradeTimeoutError ? 'timeout' : err.code !== undefined && CONNECT_ERRORS.has(err.code) ? 'connect' : 'reset';
      if (client.destroyed) return;
      this.events.upgradeFailed(client, upstream, err, kind, performance.now() - started);
    };
    // A wall-clock bound on connect plus answer: precise (a native timer), not a socket-idle one.
    let timer = setTimeout(() => failed(new UpgradeConnectTimeoutError('could not connect to the instance in time')), this.timeouts.connectMs);
    out.on('socket', (s: Socket) => {
      const answerTimer = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => failed(new UpgradeTimeoutError('the instance did not answer the upgrade in time')), this.timeouts.responseMs);
      };
      if (s.connecting) s.once('connect', answerTimer);
      else answerTimer();
    });
    out.on('error', failed);
    // The client left while we waited for the instance: nothing to wait for any more.
    const clientGone = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.open.delete(out);
      out.destroy();
    };
    client.once('close', clientGone);

    out.on('upgrade', (res: http.IncomingMessage, upSocket: Socket, upHead: Buffer) => {
      upSocket.on('error', noop);
      if (settled) {
        upSocket.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      this.open.delete(out);
      client.off('close', clientGone);
      this.events.upgradeAnswered(upstream, 101);
      upSocket.setNoDelay(true);
      client.write(headerBlock(`HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}`, res.rawHeaders, () => false) + '\r\n');
      if (upHead.length > 0) client.write(upHead);
      if (head.length > 0) upSocket.write(head);
      splice(client, upSocket);
    });

    out.on('response', (res: http.IncomingMessage) => {
      // The instance refused the upgrade with a plain HTTP answer: relay it, then close.
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      this.open.delete(out);
      client.off('close', clientGone);
      const status = res.statusCode ?? 502;
      this.events.upgradeAnswered(upstream, status);
      const hop = (n: string): boolean => n === 'connection' || n === 'keep-alive' || n === 'transfer-encoding';
      client.write(headerBlock(`HTTP/1.1 ${status} ${res.statusMessage}`, res.rawHeaders, hop) + 'Connection: close\r\n\r\n');
      res.on('error', () => client.destroy());
      // Close-delimited body: the end of the connection ends it (no chunked framing needed).
      res.pipe(client);
      client.resume();
      client.once('close', () => res.destroy());
      res.once('end', () => {
        const t = setTimeout(() => client.destroy(), TUNNEL_CLOSE_GRACE_MS);
        t.unref();
        client.once('close', () => clearTimeout(t));
      });
    });
    out.end();
  }

  /** Abort upgrades still waiting for their instance (shutdown). Open tunnels are the caller's. */
  close(): void {
    for (const out of this.open) out.destroy();
    this.open.clear();
  }
}
