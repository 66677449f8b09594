/**
 * The long-lived streams of each instance (SSE responses, WebSocket tunnels): they never finish by
 * themselves, so a drain deadline closes them, cleanly, through here.
 */
import type { Duplex } from 'node:stream';
import { Exchange } from './exchange.ts';
import type { Upstream } from './upstream.ts';

/** Raised into an SSE stream's upstream attempt when the proxy closes it at a drain deadline. */
class StreamClosedError extends Error {
  readonly code = 'LOCKSTEP_CLIENT_GONE';
}
const STREAM_CLOSED = new StreamClosedError('stream closed by the proxy at a drain deadline');
/** WebSocket close frame from the server side: FIN+close opcode, 2-byte payload, status 1001 (going away). */
const WS_CLOSE_GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9]);

/** Long-lived streams per instance (see the module comment). */
export class LongLivedStreams {
  private readonly byUpstream = new Map<Upstream, Set<Exchange | Duplex>>();

  add(u: Upstream, s: Exchange | Duplex): void {
    let set = this.byUpstream.get(u);
    if (set === undefined) {
      set = new Set();
      this.byUpstream.set(u, set);
    }
    set.add(s);
  }

  remove(u: Upstream, s: Exchange | Duplex): void {
    const set = this.byUpstream.get(u);
    if (set !== undefined && set.delete(s) && set.size === 0) this.byUpstream.delete(u);
  }

  /**
   * Close the long-lived streams on `u` cleanly: an SSE response is ended (the client sees a normal
   * end of stream and reconnects), a WebSocket gets a close frame (1001, going away) and a FIN.
   * @returns how many were closed.
   */
  closeAll(u: Upstream): number {
    const set = this.byUpstream.get(u);
    if (set === undefined) return 0;
    this.byUpstream.delete(u);
    for (const s of set) {
      if (s instanceof Exchange) {
        s.upstreamBody?.unpipe(s.res);
        s.res.end();
        // After the end, the cancelled attempt's error finds the response finished and stays quiet.
        if (s.cancel !== null && !s.settled) s.cancel.abort(STREAM_CLOSED);
      } else s.end(WS_CLOSE_GOING_AWAY);
    }
    return set.size;
  }
}
