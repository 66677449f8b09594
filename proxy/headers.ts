/**
 * Header rules shared by every forwarder: hop-by-hop headers are dropped in both directions, and
 * the X-Forwarded-* / X-Request-Id headers are set on the way in.
 */
import type http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { BlockList } from 'node:net';

/** Headers that describe one connection, not the message (RFC 9110 section 7.6.1), dropped in both directions. */
const HOP_BY_HOP = ['keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'upgrade'] as const;

/** Remove `Connection`, the headers it names, and the fixed hop-by-hop list, in place. */
export function dropConnectionHeaders(h: http.IncomingHttpHeaders): void {
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

/**
 * Set X-Forwarded-For/-Proto/-Host and X-Request-Id on an incoming request, in place.
 * From a peer inside `trusted` the existing values are kept and X-Forwarded-For is appended to;
 * from anyone else they are the client's own claims and are replaced (and `Forwarded` dropped).
 * X-Request-Id is kept when present, else a new UUID.
 */
export function setForwardedHeaders(req: http.IncomingMessage, trusted: BlockList | null): void {
  const h = req.headers;
  const remote = req.socket.remoteAddress ?? '';
  if (trusted !== null && trusted.check(remote, req.socket.remoteFamily === 'IPv6' ? 'ipv6' : 'ipv4')) {
    const prior = h['x-forwarded-for'];
    h['x-forwarded-for'] = prior ? `${prior}, ${remote}` : remote;
    if (h['x-forwarded-proto'] === undefined) h['x-forwarded-proto'] = 'http';
    if (h['x-forwarded-host'] === undefined) h['x-forwarded-host'] = h.host ?? '';
  } else {
    h['x-forwarded-for'] = remote;
    h['x-forwarded-proto'] = 'http';
    h['x-forwarded-host'] = h.host ?? '';
    if (h.forwarded !== undefined) delete h.forwarded;
  }
  if (h['x-request-id'] === undefined) h['x-request-id'] = randomUUID();
}
