/**
 * A minimal round-robin proxy with an affinity cookie, for the checks' tests only (the real
 * one lands in proxy/). A request without the cookie goes to the next upstream and is pinned
 * there by the cookie, as the production proxy does.
 */
import http from 'node:http';
import { cookieValue, listen, type RunningServer } from './fake-app.ts';

export const AFFINITY_COOKIE = 'lb';

export async function startTestProxy(upstreams: string[]): Promise<RunningServer> {
  let next = 0;
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const pinned = Number(cookieValue(req.headers.cookie, AFFINITY_COOKIE));
    const index = Number.isInteger(pinned) && pinned >= 0 && pinned < upstreams.length ? pinned : next++ % upstreams.length;
    const target = new URL(req.url ?? '/', upstreams[index]);
    const upstream = http.request(
      target,
      { method: req.method, headers: { ...req.headers, host: target.host }, agent },
      (up) => {
        const headers = { ...up.headers };
        if (pinned !== index) {
          const own = `${AFFINITY_COOKIE}=${index}; Path=/; HttpOnly`;
          const prior = headers['set-cookie'] ?? [];
          headers['set-cookie'] = [...prior, own];
        }
        res.writeHead(up.statusCode ?? 502, headers);
        up.pipe(res);
      },
    );
    upstream.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'bad gateway', detail: e.message }));
    });
    req.pipe(upstream);
  });
  const running = await listen(server);
  return {
    url: running.url,
    close: async () => {
      await running.close();
      agent.destroy();
    },
  };
}
