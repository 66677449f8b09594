/**
 * One client request on its way through the proxy, and the contract between the request path
 * (`server.ts`: routing, holds, retries, answers) and the forwarders that talk HTTP to an instance
 * (`forward-undici.ts`, `forward-http-proxy.ts`).
 */
import type http from 'node:http';
import type { Held } from './drain.ts';
import type { Upstream } from './upstream.ts';

/** Methods that may be sent twice (RFC 9110 section 9.2.2): only these are retried after being sent. */
export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** How an attempt failed. `connect`: nothing was sent. `timeout`: no response (or body) in time. `reset`: anything else. */
export type FailureKind = 'connect' | 'timeout' | 'reset';

/** What stops an upstream attempt: undici's dispatch controller, or a wrapper of the http-proxy-3 request. */
export interface Abortable {
  abort(reason: Error): void;
}

/** One client request: where it is pinned and sent, how often it was tried, whether it is held. */
export class Exchange {
  upstream: Upstream | null = null;
  /** The instance the client's valid affinity cookie names, if any. */
  pinned: Upstream | null = null;
  /** The response must carry a new affinity cookie (no valid one came in, or it was re-pinned). */
  setAffinity = false;
  /** Name of the instance the client was pinned to when it had to be moved. */
  repinnedFrom: string | null = null;
  attempts = 0;
  /** When the current attempt was sent (performance.now() ms): what a timeout's elapsed time counts from. */
  attemptStart = 0;
  /** Instances that failed this request (excluded from retries); null until the first failure. */
  failed: Upstream[] | null = null;
  held: Held<Exchange> | null = null;
  /** Cancels the current upstream attempt (set by a forwarder that needs it). */
  cancel: Abortable | null = null;
  /** The current attempt is finished (response complete or failed): nothing left to cancel. */
  settled = false;
  /** The upstream response body while it is piped to the client (http-proxy-3 engine), to unpipe it. */
  upstreamBody: import('node:stream').Readable | null = null;
  /** Registered as a long-lived stream of its instance (SSE). */
  streaming = false;
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly start: number;
  readonly upload: boolean;
  readonly hasBody: boolean;
  /** Safe to send again after it reached an instance: idempotent and no body to replay. */
  readonly replayable: boolean;

  constructor(req: http.IncomingMessage, res: http.ServerResponse, start: number, upload: boolean, hasBody: boolean, replayable: boolean) {
    this.req = req;
    this.res = res;
    this.start = start;
    this.upload = upload;
    this.hasBody = hasBody;
    this.replayable = replayable;
  }
}

/** What a forwarder reports back to the request path. */
export interface ForwardEvents {
  /**
   * The instance answered with `statusCode`; called before any header is written to the client,
   * so the path can account for the outcome. `eventStream`: the body is an SSE stream (long-lived,
   * closed by the proxy at a drain deadline).
   */
  responseStarted(ex: Exchange, statusCode: number, eventStream: boolean): void;
  /** The attempt failed. The path answers (502/504), retries, or cuts the response. */
  attemptFailed(ex: Exchange, err: Error, kind: FailureKind): void;
}

/** Sends one attempt of a request to one instance and streams the answer back. */
export interface Forwarder {
  /** Forward `ex` to `upstream` (already chosen and counted in flight). */
  forward(ex: Exchange, upstream: Upstream): void;
  /** An instance left the pool: release its connections once idle. */
  forget(upstream: Upstream): void;
  /** Close every upstream connection. */
  close(): Promise<void>;
}

/**
 * True when a response's `Cache-Control` lets shared caches keep it (`public`, `s-maxage`): such a
 * response must carry nothing per-client, so the proxy adds no affinity cookie to it (a CDN would
 * hand one client's pin to everyone).
 */
export function sharedCacheable(cacheControl: string | string[] | undefined): boolean {
  if (cacheControl === undefined) return false;
  const v = typeof cacheControl === 'string' ? cacheControl : cacheControl.join(',');
  return /(?:^|[\s,])(?:public|s-maxage)\b/i.test(v);
}

/**
 * The extra response headers the proxy adds: pinning cookie, re-pin notice (both per-client, so
 * neither on a response shared caches may keep). Appends to a flat [name, value, ...] list.
 */
export function appendProxyResponseHeaders(ex: Exchange, upstream: Upstream, out: string[], cacheable = false): void {
  if (cacheable) return;
  if (ex.setAffinity) out.push('set-cookie', upstream.affinitySetCookie);
  if (ex.repinnedFrom !== null && ex.repinnedFrom !== upstream.name) out.push('x-lockstep-repinned', `${ex.repinnedFrom} -> ${upstream.name}`);
}
