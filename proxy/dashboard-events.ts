/**
 * The dashboard's live feed: Server-Sent Events streams that get a `fleet` event (a FleetSnapshot
 * as JSON) every TICK_MS while at least one is open. Sampling stops when the last stream closes.
 * A stream opened with a session ends when the session does (sign-out or expiry).
 */
import type http from 'node:http';
import type { Logger } from 'pino';
import type { FleetSampler, FleetSnapshot } from './dashboard-fleet.ts';

/** Time between two `fleet` events, ms. */
const TICK_MS = 1000;
/** Open event streams at most; more are refused. */
export const MAX_STREAMS = 32;

interface Stream {
  res: http.ServerResponse;
  /** Session key, or null when the stream was opened with the bearer token. */
  session: string | null;
}

/** What the feed reads from and how it knows a session is still open. */
export interface FleetEventsOptions {
  sampler: FleetSampler;
  logger: Logger;
  /** True while the session with this key is open (see SessionStore.valid). */
  sessionValid: (key: string) => boolean;
}

/** Every open event stream of one admin listener, and the ticker that feeds them. */
export class FleetEvents {
  private readonly streams = new Set<Stream>();
  private ticker: NodeJS.Timeout | null = null;
  private ticking = false;

  constructor(private readonly options: FleetEventsOptions) {}

  /** True when MAX_STREAMS are open: the caller should refuse another (503). */
  full(): boolean {
    return this.streams.size >= MAX_STREAMS;
  }

  /**
   * Answer with an event stream on a response nobody else writes to (Fastify: after
   * `reply.hijack()`), and send the first picture at once.
   * @param headers extra response headers (the dashboard's security headers).
   * @param session the session key the stream belongs to, or null for a bearer-token client.
   */
  open(req: http.IncomingMessage, res: http.ServerResponse, headers: http.OutgoingHttpHeaders, session: string | null): void {
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    req.socket.setNoDelay(true);
    res.write('retry: 2000\n\n');
    const stream: Stream = { res, session };
    this.streams.add(stream);
    res.on('close', () => {
      this.streams.delete(stream);
      if (this.streams.size === 0) this.stopTicker();
    });
    if (this.ticker === null) {
      this.ticker = setInterval(() => void this.tick(), TICK_MS);
      this.ticker.unref();
    }
    // The first picture at once, not a second later.
    void this.tick();
  }

  /** End every stream that belongs to the session with this key (it was signed out). */
  endSession(key: string): void {
    for (const s of this.streams) if (s.session === key) s.res.end();
  }

  /** End every stream and stop sampling (the admin listener is closing). */
  close(): void {
    this.stopTicker();
    for (const s of this.streams) s.res.end();
    this.streams.clear();
  }

  private stopTicker(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.streams.size === 0) return;
    this.ticking = true;
    try {
      let snap: FleetSnapshot;
      try {
        snap = await this.options.sampler.snapshot();
      } catch (err) {
        this.options.logger.error({ err }, 'dashboard could not read the fleet');
        return;
      }
      const frame = `event: fleet\ndata: ${JSON.stringify(snap)}\n\n`;
      for (const s of this.streams) {
        if (s.session !== null && !this.options.sessionValid(s.session)) s.res.end();
        else s.res.write(frame);
      }
    } finally {
      this.ticking = false;
    }
  }
}
