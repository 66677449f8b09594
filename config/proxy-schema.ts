/**
 * The inventory's `proxy` section: its schema (part of `InventorySchema`, config/inventory.ts), the
 * documentation of each key beside it, and the rules that span keys (plain HTTP admin stays on
 * loopback; the deployer never sends the token in clear off loopback).
 */
import { z } from 'zod';
import { isLoopbackHost } from './loopback.ts';

const hostPort = z
  .string()
  .regex(/^[^:\s]+:\d{1,5}$/, 'use host:port, e.g. 127.0.0.1:8080');

const HealthCheckSchema = z
  .object({
    interval_ms: z.number().int().min(50).default(1000),
    timeout_ms: z.number().int().min(50).default(1000),
    rise: z.number().int().min(1).default(2),
    fall: z.number().int().min(1).default(2),
  })
  .strict();

/** Default share of requests in the proxy's access log (README "Proxy access log": measured with bench/access-log.ts). */
export const ACCESS_LOG_SAMPLE_RATE = 0.1;

export const ProxySchema = z
  .object({
    listen: hostPort.default('127.0.0.1:8080').describe('where users connect'),
    admin_listen: hostPort.default('127.0.0.1:8081').describe('admin API; keep it on loopback'),
    admin_token_env: z.string().default('LOCKSTEP_ADMIN_TOKEN').describe('env var holding the admin bearer token'),
    admin_token_file: z.string().default('.lockstep/admin-token').describe('used (and created) when the env var is unset'),
    affinity_secret_env: z.string().default('LOCKSTEP_AFFINITY_SECRET'),
    health_check: HealthCheckSchema.default({ interval_ms: 1000, timeout_ms: 1000, rise: 2, fall: 2 }),
    workers: z.number().int().min(1).max(64).default(1).describe('proxy processes sharing the port (node:cluster); env LOCKSTEP_PROXY_WORKERS overrides'),
    balance: z.enum(['round_robin', 'least_connections']).default('round_robin'),
    engine: z
      .enum(['lockstep', 'haproxy', 'undici', 'http-proxy-3'])
      .default('lockstep')
      .describe('the balancer `lockstep proxy` runs: `lockstep` (its own Node proxy) or `haproxy` (supervised HAProxy, same admin API); `undici` / `http-proxy-3` are the older spelling of `lockstep` with that forwarder'),
    forwarder: z.enum(['undici', 'http-proxy-3']).default('undici').describe('engine lockstep: how requests are forwarded'),
    haproxy: z
      .object({
        bin: z.string().min(1).default('/usr/sbin/haproxy').describe('the haproxy program'),
        run_dir: z.string().min(1).default('.lockstep/haproxy').describe('haproxy.cfg, stats socket, pid and server-state file (relative: to the inventory)'),
      })
      .strict()
      .default({ bin: '/usr/sbin/haproxy', run_dir: '.lockstep/haproxy' })
      .describe('engine haproxy: the program and its working directory'),
    connect_timeout_ms: z.number().int().min(1).default(5_000),
    response_timeout_ms: z.number().int().min(1).default(60_000).describe('no response headers this long: 504'),
    idle_timeout_ms: z.number().int().min(1).default(120_000).describe('a response body stalled this long is cut'),
    upstream_keepalive_ms: z.number().int().min(1).default(3_000).describe('idle upstream sockets closed after this; keep at least 2 s below every app keepAliveTimeout (Node default 5 s)'),
    retries: z.number().int().min(1).max(10).default(3).describe('attempts per request in total'),
    hold_timeout_ms: z.number().int().min(0).default(15_000).describe('a request pinned to a draining instance waits this long'),
    eject_after_failures: z.number().int().min(0).default(5).describe('failures in a row that eject an instance (0: off)'),
    trusted_proxies: z.array(z.string().min(1)).default([]).describe('addresses or CIDRs whose X-Forwarded-* are trusted'),
    sessions_shared: z
      .boolean()
      .optional()
      .describe('every instance can serve every session (default: true when app.session_store is redis): a sticky client of an instance drained for a deploy moves at once instead of waiting hold_timeout_ms'),
    access_log: z
      .object({
        path: z.string().min(1).default('.lockstep/proxy-access.log').describe('JSON lines file, relative to the inventory'),
        sample_rate: z.number().min(0).max(1).default(ACCESS_LOG_SAMPLE_RATE).describe('share of requests logged (0 off, 1 all)'),
      })
      .strict()
      .prefault({})
      .describe('one JSON line per sampled request (lockstep logs --proxy)'),
    admin_tls: z
      .object({
        cert_file: z.string().min(1).describe('PEM certificate (chain) the admin API presents'),
        key_file: z.string().min(1).describe('PEM private key of that certificate'),
      })
      .strict()
      .optional()
      .describe('serve the admin API over HTTPS; required when admin_listen is not a loopback address'),
    admin_url: z.string().min(1).optional().describe('where the deployer reaches the admin API (default: from admin_listen)'),
    admin_ca_file: z.string().min(1).optional().describe("PEM CA (or the proxy's own self-signed certificate) the deployer verifies the admin API with"),
    state_dir: z.string().min(1).default('.lockstep/proxy').describe('where the proxy keeps drain/disable state across restarts'),
  })
  .strict()
  .superRefine((p, ctx) => {
    const host = p.admin_listen.slice(0, p.admin_listen.lastIndexOf(':'));
    if (!p.admin_tls && !isLoopbackHost(host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['admin_listen'],
        message:
          `"${p.admin_listen}" is not a loopback address, and the admin API (bearer token, drain, disable) listens off loopback only over TLS: ` +
          'set proxy.admin_tls: { cert_file, key_file } (and proxy.admin_ca_file for the deployer), or listen on 127.0.0.1',
      });
    }
    if (p.admin_url !== undefined) {
      let url: URL | null = null;
      try {
        url = new URL(p.admin_url);
      } catch {
        // reported below
      }
      if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '') {
        ctx.addIssue({ code: 'custom', path: ['admin_url'], message: `"${p.admin_url}" is not a base URL like https://proxy.example:8443` });
      } else if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
        ctx.addIssue({
          code: 'custom',
          path: ['admin_url'],
          message: `"${p.admin_url}": the admin token must not cross the network in clear; use https:// (proxy.admin_tls on the proxy, proxy.admin_ca_file here)`,
        });
      } else if (url.protocol === 'http:' && p.admin_ca_file !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['admin_ca_file'], message: 'is only used with an https:// admin_url' });
      }
    } else if (p.admin_ca_file !== undefined && !p.admin_tls) {
      ctx.addIssue({ code: 'custom', path: ['admin_ca_file'], message: 'is only used over TLS: set proxy.admin_url to https://... or proxy.admin_tls' });
    }
  });

/** The `proxy` section with every default applied, for an inventory that has none. */
export function proxySectionDefaults(): z.infer<typeof ProxySchema> {
  return ProxySchema.parse({});
}
