/**
 * A tiny real HTTP server implementing the app contract (docs/ARCHITECTURE.md), with optional
 * deliberate flaws so the checks can be shown to fail. Not the real app: that lands in app/.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';

/** The flaws the incident had (and one more), each switched on alone. */
export type AppFlaw =
  | 'none'
  /** Uses a client-sent `session_id` (where: `trusts`) when present (incident cause 2). */
  | 'trusts-client-session-id'
  /** Everyone shares one persisted session (like incident cause 1, on the server side). */
  | 'single-shared-session'
  /** Without a session cookie, answers with the most recent session. */
  | 'reads-without-cookie'
  /** A session read takes `?session_id=` or `X-Session-Id` over the cookie. */
  | 'reads-client-session-id';

export interface FakeAppOptions {
  instance: string;
  release: string;
  digest: string;
  flaw?: AppFlaw;
  /** For 'trusts-client-session-id': where the app looks. Default 'form', as in the incident. */
  trusts?: 'form' | 'query' | 'header' | 'cookie';
  uploadPaths?: string[];
  sessionPath?: string;
  /** Name of the session cookie. Default "sid". */
  cookieName?: string;
}

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy(new Error('body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Listen on an ephemeral loopback port and resolve with its base URL. */
export async function listen(server: http.Server): Promise<RunningServer> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function startFakeApp(options: FakeAppOptions): Promise<RunningServer> {
  const flaw = options.flaw ?? 'none';
  const uploadPaths = new Set(options.uploadPaths ?? ['/api/upload', '/api/v1/data-analysis/upload']);
  const sessionPath = options.sessionPath ?? '/api/session';
  const cookieName = options.cookieName ?? 'sid';
  const sessions = new Map<string, string[]>();
  const sharedId = randomUUID();
  let latest: string | undefined;

  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      if (req.method === 'GET' && url.pathname === '/healthz') return send(res, 200, { ok: true });
      if (req.method === 'GET' && url.pathname === '/version') {
        return send(res, 200, { release: options.release, digest: options.digest, instance: options.instance, pid: process.pid, started_at: 'test' });
      }
      if (req.method === 'POST' && uploadPaths.has(url.pathname)) {
        const body = await readBody(req);
        // Parse multipart with the platform's own (undici) parser rather than by hand.
        const form = await new Request('http://fake/', {
          method: 'POST',
          headers: { 'content-type': req.headers['content-type'] ?? '' },
          body: new Uint8Array(body),
        }).formData();
        const file = form.get('file');
        if (!(file instanceof Blob)) return send(res, 400, { status: 'error', error: 'no file' });
        const csv = await file.text();
        const claimed = {
          form: form.get('session_id'),
          query: url.searchParams.get('session_id'),
          header: req.headers['x-session-id'],
          cookie: cookieValue(req.headers.cookie, 'session_id'),
        }[options.trusts ?? 'form'];
        const id =
          flaw === 'single-shared-session'
            ? sharedId
            : flaw === 'trusts-client-session-id' && typeof claimed === 'string' && claimed
              ? claimed
              : randomUUID();
        sessions.set(id, [...(sessions.get(id) ?? []), csv]);
        latest = id;
        const lines = csv.trim().split('\n');
        return send(
          res,
          200,
          { status: 'success', session_id: id, rows: lines.length - 1, columns: lines[0]!.split(',').length },
          { 'set-cookie': `${cookieName}=${id}; Path=/; HttpOnly; SameSite=Lax` },
        );
      }
      if (req.method === 'GET' && url.pathname === sessionPath) {
        let id = cookieValue(req.headers.cookie, cookieName);
        if (!id && flaw === 'reads-without-cookie') id = latest;
        if (flaw === 'reads-client-session-id') {
          const header = req.headers['x-session-id'];
          id = url.searchParams.get('session_id') ?? (typeof header === 'string' ? header : undefined) ?? id;
        }
        const data = id === undefined ? undefined : sessions.get(id);
        if (!data) return send(res, 401, { error: 'no session' });
        return send(res, 200, { session_id: id, instance: options.instance, uploads: data });
      }
      send(res, 404, { error: 'not found' });
    })().catch((e: unknown) => send(res, 500, { error: String(e) }));
  });
  return listen(server);
}
