/**
 * The checks' HTTP client: one request, bounded in time and size, that never throws for a
 * network problem. A check turns every answer (or its absence) into a named failure, so an
 * unreachable instance must come back as data, not as a stack trace.
 */
import { Agent, FormData, request } from 'undici';

/** What one request produced: an HTTP answer (any status) or the network error in one line. */
export type HttpOutcome =
  | { ok: true; status: number; headers: Record<string, string | string[] | undefined>; text: string }
  | { ok: false; error: string };

export interface HttpRequestOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: FormData;
  /** Whole request, connect to last body byte, in ms. */
  timeoutMs: number;
  /** Connection pool to use; each simulated client gets its own so no connection is shared. */
  dispatcher: Agent;
}

/** Bodies larger than this are cut off: a check reads small JSON, never a download. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** A fresh keep-alive pool whose connect step is bounded by `timeoutMs`. Close it when done. */
export function createClientPool(timeoutMs: number): Agent {
  return new Agent({ connect: { timeout: timeoutMs }, connections: 4 });
}

/** Turn any thrown network error into one readable line, keeping undici's or Node's code. */
export function describeNetworkError(e: unknown): string {
  if (e instanceof Error) {
    const err = e as Error & { code?: string; cause?: unknown };
    const cause = err.cause instanceof Error ? (err.cause as Error & { code?: string }) : undefined;
    // DOMException carries a numeric legacy `code` (23 for a timeout): only string codes mean something.
    const code = [err.code, cause?.code].find((c): c is string => typeof c === 'string');
    const message = cause && cause.message !== err.message ? `${err.message} (${cause.message})` : err.message;
    return [code, message].filter(Boolean).join(': ');
  }
  return String(e);
}

/**
 * Send one request.
 * @param url absolute http URL.
 * @returns the status, headers and body text (first 4 MiB), or `{ok: false, error}` for a
 *   connection failure, timeout or invalid URL. Never throws.
 */
export async function httpRequest(url: string, options: HttpRequestOptions): Promise<HttpOutcome> {
  try {
    const res = await request(url, {
      method: options.method ?? 'GET',
      headers: options.headers,
      body: options.body,
      dispatcher: options.dispatcher,
      signal: AbortSignal.timeout(options.timeoutMs),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      size += buf.length;
      if (size > MAX_BODY_BYTES) {
        res.body.destroy();
        break;
      }
      chunks.push(buf);
    }
    return { ok: true, status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') };
  } catch (e) {
    const timedOut = e instanceof Error && (e.name === 'TimeoutError' || (e as { code?: unknown }).code === 'UND_ERR_HEADERS_TIMEOUT' || (e as { code?: unknown }).code === 'UND_ERR_BODY_TIMEOUT');
    return { ok: false, error: timedOut ? `timed out after ${options.timeoutMs} ms` : describeNetworkError(e) };
  }
}

/** Parse a body as JSON, or undefined when it is not JSON. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Shorten an arbitrary body for a one-line message. */
export function snippet(text: string, max = 120): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}
