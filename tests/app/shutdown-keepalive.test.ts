/**
 * An instance that gets SIGTERM while the proxy's pooled keep-alive connection to it is open
 * exits by itself, promptly (issue 13, "Sticky clients during a planned restart"): the real app
 * process, a keep-alive agent like the proxy's pool holding a connection to it, and a bound on
 * the exit (5 s, well under bin/service's 10 s before KILL; a bound, not a timing measurement).
 * A connection idle at SIGTERM is closed by Fastify's own close (forceCloseConnections 'idle');
 * one busy at SIGTERM that goes idle after its answer (keep-alive) needs the app's shutdown to
 * keep closing idle connections (app/server/index.ts): without it the second case waits for the
 * 65 s keep-alive timeout, i.e. for the KILL.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRelease, startApp, type RunningApp } from './support.ts';

/** Exit bound, ms: bin/service sends KILL after 10 s. */
const EXIT_BOUND_MS = 5_000;

let release: string;
const apps: RunningApp[] = [];

beforeAll(async () => {
  release = await buildRelease();
}, 120_000);

afterAll(async () => {
  for (const a of apps) if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill('SIGKILL');
});

/** GET `path` through `agent`; resolves with the status once the body is read. */
function get(agent: http.Agent, url: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}${path}`, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

/** Resolve with how the process ended, or 'still running' after `ms`. */
function exitWithin(app: RunningApp, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('still running'), ms);
    app.proc.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve(`exited (code ${String(code)}, signal ${String(signal)})`);
    });
  });
}

describe('app shutdown with a pooled keep-alive connection open', () => {
  it('SIGTERM with an idle keep-alive connection open: the process exits by itself within 5 s', async () => {
    const app = await startApp(release);
    apps.push(app);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect(await get(agent, app.url, '/healthz')).toBe(200);
      expect(await get(agent, app.url, '/version')).toBe(200);
      // One socket, reused and now idle in the pool: the proxy's situation between requests.
      const pooled = Object.values(agent.freeSockets).flat();
      expect(pooled).toHaveLength(1);
      app.proc.kill('SIGTERM');
      expect(await exitWithin(app, EXIT_BOUND_MS)).toBe('exited (code 0, signal null)');
    } finally {
      agent.destroy();
    }
  });

  it('SIGTERM while a request is in flight on the pooled connection, which goes idle after its answer: the process exits by itself within 5 s', async () => {
    // LOG_LEVEL info: Fastify logs "incoming request" once it has the request's headers, the
    // condition for "in flight" below (no fixed sleep).
    const app = await startApp(release, { LOG_LEVEL: 'info' });
    apps.push(app);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect(await get(agent, app.url, '/healthz')).toBe(200);
      const boundary = 'lockstep-boundary';
      const body = Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\nContent-Type: text/csv\r\n\r\nx,y\n1,2\n3,4\n\r\n--${boundary}--\r\n`,
      );
      let connectionHeader: string | undefined;
      let exited: Promise<string> = Promise.resolve('never signalled');
      const answered = new Promise<number>((resolve, reject) => {
        const req = http.request(
          `${app.url}/api/upload`,
          { method: 'POST', agent, headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(body.length) } },
          (res) => {
            connectionHeader = res.headers.connection;
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.write(body.subarray(0, 20));
        // The rest only after SIGTERM: the request is in flight when the signal comes.
        until(() => /incoming request[^\n]*\/api\/upload|\/api\/upload[^\n]*incoming request/.test(app.output()), 'the upload to reach the app').then(
          () => {
            exited = exitWithin(app, EXIT_BOUND_MS);
            app.proc.kill('SIGTERM');
            // The rest of the body once the app is shutting down; its answer leaves the socket idle.
            until(() => app.output().includes('shutting down'), 'the app to log its shutdown').then(() => req.end(body.subarray(20)), reject);
          },
          reject,
        );
      });
      expect(await answered).toBeLessThan(500); // the in-flight request got its answer
      console.log(`in-flight upload answered; response Connection header: ${String(connectionHeader)}; pooled sockets: ${Object.values(agent.freeSockets).flat().length}`);
      expect(await exited).toBe('exited (code 0, signal null)');
    } finally {
      agent.destroy();
    }
  });
});

/** Wait for `cond` (polled every 50 ms, at most `ms`). */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
