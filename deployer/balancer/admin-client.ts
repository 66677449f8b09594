/**
 * The deployer's client for the proxy admin API (docs/ARCHITECTURE.md, "Proxy admin API").
 * The deployer talks to the proxy only through this: list instances, drain, enable, disable.
 */
import { readFileSync } from 'node:fs';
import { Agent, fetch as undiciFetch, type Dispatcher } from 'undici';
import { ConfigError, LockstepError } from '../../config/errors.ts';
import type { Inventory } from '../../config/inventory.ts';
import { adminEndpoint, adminTokenFromInventory } from '../../config/proxy-section.ts';
import type { RolloutInProgress } from '../../verdict/fleet-verdict.ts';

/** One instance as the proxy sees it. */
export interface ProxyInstanceStatus {
  name: string;
  url: string;
  state: 'enabled' | 'draining' | 'disabled';
  healthy: boolean;
  inflight: number;
}

/** Result of a drain. `drained` is true when no request was in flight when the proxy answered. */
export interface DrainResult {
  name: string;
  state: 'enabled' | 'draining' | 'disabled';
  drained: boolean;
  inflight: number;
}

/** The proxy admin API failed: unreachable, refused the token, or answered an error. Exit 3. */
export class ProxyAdminError extends LockstepError {
  constructor(
    readonly adminUrl: string,
    message: string,
    /** HTTP status when the proxy answered, else undefined. */
    readonly status?: number,
  ) {
    super('LOCKSTEP_PROXY', message, 3);
  }
}

export interface ProxyAdminClientOptions {
  /** Bound on every request other than a drain wait, ms. Default 5000. */
  timeoutMs?: number;
  /**
   * PEM CA certificate(s) an https admin URL must chain to, instead of the system CAs (a self-signed
   * certificate given here pins that certificate). The certificate and its host name are always verified.
   */
  ca?: string | Buffer;
}

/** Typed client of the proxy admin API. Every method throws ProxyAdminError on failure. */
export class ProxyAdminClient {
  readonly adminUrl: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly dispatcher: Dispatcher | undefined;

  /**
   * @param adminUrl base URL of the admin listener, e.g. `http://127.0.0.1:8081`.
   * @param token the admin bearer token.
   */
  constructor(adminUrl: string, token: string, options: ProxyAdminClientOptions = {}) {
    this.adminUrl = adminUrl.replace(/\/+$/, '');
    this.token = token;
    this.timeoutMs = options.timeoutMs ?? 5000;
    // Verification stays on (rejectUnauthorized is undici's default, true); only the trusted CAs change.
    this.dispatcher = options.ca !== undefined ? new Agent({ connect: { ca: options.ca } }) : undefined;
  }

  /** Close the connections this client keeps (only a client with its own CA has any of its own). */
  async close(): Promise<void> {
    await this.dispatcher?.close();
  }

  /**
   * Every instance with its state, health and in-flight count.
   * @throws ProxyAdminError when the proxy is unreachable, refuses the token or answers an error.
   */
  async listInstances(): Promise<ProxyInstanceStatus[]> {
    const body = (await this.call('GET', '/admin/instances')) as { instances: ProxyInstanceStatus[] };
    return body.instances;
  }

  /**
   * Stop new work to an instance; with `waitMs`, wait until its in-flight requests finished or
   * `waitMs` passed (the proxy bounds the wait; this client allows `waitMs` plus its own timeout).
   * @param name instance name. @param options.waitMs how long to wait for in-flight to reach 0, ms.
   * @returns `{drained, inflight}`: drained false means requests were still running at the deadline.
   * @throws ProxyAdminError (404 for an unknown instance).
   */
  async drain(name: string, options: { waitMs?: number } = {}): Promise<DrainResult> {
    // The proxy accepts at most 600000 ms per call.
    const waitMs = options.waitMs === undefined ? undefined : Math.min(600_000, Math.max(0, Math.round(options.waitMs)));
    const wait = waitMs !== undefined ? `?wait=1&timeout_ms=${waitMs}` : '';
    const extra = waitMs ?? 0;
    return (await this.call('POST', `/admin/instances/${encodeURIComponent(name)}/drain${wait}`, extra)) as DrainResult;
  }

  /** Put an instance back into rotation. @throws ProxyAdminError. */
  async enable(name: string): Promise<ProxyInstanceStatus> {
    return (await this.call('POST', `/admin/instances/${encodeURIComponent(name)}/enable`)) as ProxyInstanceStatus;
  }

  /** Take an instance out of rotation entirely (pinned clients move too). @throws ProxyAdminError. */
  async disable(name: string): Promise<ProxyInstanceStatus> {
    return (await this.call('POST', `/admin/instances/${encodeURIComponent(name)}/disable`)) as ProxyInstanceStatus;
  }

  /**
   * Make the proxy re-read its upstream set from the inventory file it was started with
   * (as SIGHUP does). Unchanged instances keep their state and connections.
   * @returns the instance names added and removed.
   * @throws ProxyAdminError (501 when the proxy was started without a reload source).
   */
  async reload(): Promise<{ added: string[]; removed: string[] }> {
    return (await this.call('POST', '/admin/reload')) as { added: string[]; removed: string[] };
  }

  /** The rollout announced to the proxy (GET /admin/rollout), or null. @throws ProxyAdminError. */
  async rollout(): Promise<RolloutInProgress | null> {
    return ((await this.call('GET', '/admin/rollout')) as { rollout: RolloutInProgress | null }).rollout;
  }

  /**
   * Announce (or refresh) the rollout in progress, so the dashboard shows "ROLLING OUT".
   * @param ttlMs the proxy forgets it after this long without a refresh, ms. @throws ProxyAdminError.
   */
  async announceRollout(rollout: RolloutInProgress, ttlMs: number): Promise<void> {
    await this.call('POST', '/admin/rollout', 0, false, JSON.stringify({ ...rollout, ttl_ms: ttlMs }));
  }

  /** The rollout ended: clear the announcement. @throws ProxyAdminError. */
  async clearRollout(): Promise<void> {
    await this.call('DELETE', '/admin/rollout');
  }

  /** Prometheus text from `/metrics`. @throws ProxyAdminError. */
  async metrics(): Promise<string> {
    return (await this.call('GET', '/metrics', 0, true)) as string;
  }

  private async call(method: string, path: string, extraTimeoutMs = 0, text = false, body?: string): Promise<unknown> {
    const url = `${this.adminUrl}${path}`;
    let res: Awaited<ReturnType<typeof undiciFetch>>;
    try {
      res = await undiciFetch(url, {
        method,
        headers: body === undefined ? { authorization: `Bearer ${this.token}` } : { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.timeoutMs + extraTimeoutMs),
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
      });
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      let why = err.name === 'TimeoutError' ? `no answer within ${this.timeoutMs + extraTimeoutMs} ms` : (err.cause?.code ?? err.message);
      if (/CERT|SELF_SIGNED|ERR_TLS|HOSTNAME|ALTNAME|UNABLE_TO/i.test(why)) {
        why = `TLS: the admin API's certificate was not accepted (${why}${err.cause?.message ? `: ${err.cause.message}` : ''}); set proxy.admin_ca_file to the CA that signed it (or to the certificate itself) and make sure it names the host of the admin URL`;
      }
      throw new ProxyAdminError(this.adminUrl, `proxy admin API at ${this.adminUrl} is unreachable (${method} ${path}: ${why}). Is \`lockstep proxy\` running?`);
    }
    const answer = await res.text().catch(() => '');
    if (res.status === 401) {
      throw new ProxyAdminError(
        this.adminUrl,
        `proxy admin API at ${this.adminUrl} refused the admin token (401): the proxy and the deployer must use the same token (env var or token file)`,
        401,
      );
    }
    if (!res.ok) {
      let message = answer.slice(0, 200);
      try {
        message = (JSON.parse(answer) as { message?: string }).message ?? message;
      } catch {
        // not JSON: keep the text
      }
      throw new ProxyAdminError(this.adminUrl, `proxy admin API at ${this.adminUrl}: ${method} ${path} answered ${res.status}: ${message}`, res.status);
    }
    if (text) return answer;
    try {
      return JSON.parse(answer) as unknown;
    } catch {
      throw new ProxyAdminError(this.adminUrl, `proxy admin API at ${this.adminUrl}: ${method} ${path} answered invalid JSON`, res.status);
    }
  }
}

/**
 * A client for the proxy of an inventory: admin URL from `proxy.admin_url`, else `proxy.admin_listen`
 * (https when `proxy.admin_tls` is set); CA from `proxy.admin_ca_file` (else the system CAs); token
 * from env `proxy.admin_token_env`, else the token file (created when missing, so a proxy started
 * later uses the same one).
 * @throws ConfigError when the token file or the CA file cannot be read.
 */
export function proxyClientFromInventory(
  inventory: Inventory,
  env: NodeJS.ProcessEnv = process.env,
  options: ProxyAdminClientOptions = {},
): ProxyAdminClient {
  const { url, caFile } = adminEndpoint(inventory);
  let ca = options.ca;
  if (caFile !== undefined) {
    try {
      ca = readFileSync(caFile);
    } catch (e) {
      throw new ConfigError(`${inventory.file}: field "proxy.admin_ca_file": cannot read ${caFile} (${(e as NodeJS.ErrnoException).code ?? String(e)})`, {
        file: inventory.file,
        field: 'proxy.admin_ca_file',
      });
    }
  }
  return new ProxyAdminClient(url, adminTokenFromInventory(inventory, env).value, { ...options, ...(ca !== undefined ? { ca } : {}) });
}
