/**
 * The inventory: one schema for `inventory.yaml`, validated on load. Each key's documentation
 * lives next to its schema entry (`.describe`), and every error names the file, line and key.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import os from 'node:os';
import { LineCounter, parseDocument, isMap, isSeq, type Node as YamlNode } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { ProxySchema } from './proxy-schema.ts';

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]*$/i, 'use letters, digits, ".", "_" or "-" (no spaces)');
const absPath = z.string().min(1);

/**
 * A shared dir: a relative path of plain segments (`data`, `public/uploads`). `.`, `..`, an
 * absolute path or a `..` segment would link (and, on every deploy, `rm -rf`) a path outside the
 * release or the release itself.
 */
const sharedDir = z
  .string()
  .regex(/^[a-z0-9._/-]+$/i, 'use letters, digits, ".", "_", "-" and "/" only')
  .refine((p) => !p.startsWith('/'), 'must be relative to <deploy_to>/shared, not an absolute path')
  .refine((p) => p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..'), 'must not be "." or "..", nor contain an empty, "." or ".." segment: name a directory inside <deploy_to>/shared such as data or public/uploads');

/** Environment variables the deployer sets for the service itself (fleet/instance.ts serviceEnv). */
export const RESERVED_ENV: ReadonlySet<string> = new Set([
  'HOST', 'PORT', 'DATA_DIR', 'LOG_DIR', 'RUN_DIR', 'LOCKSTEP_INSTANCE', 'LOCKSTEP_RELEASE_DIR', 'ASSET_FALLBACK_DIR',
  'SESSION_STORE', 'REDIS_URL', 'LOCKSTEP_APP_ENV_KEYS', 'LOCKSTEP_HOOK', 'LOCKSTEP_RELEASE', 'LOCKSTEP_DIGEST',
]);

const ServiceSchema = z
  .object({
    start: z.string().min(1).describe('command (run in `current`) that starts the app in the background'),
    stop: z.string().min(1).describe('command that stops the app; must succeed when it is not running'),
    restart: z.string().min(1).describe('command that (re)starts the app so it runs the code in `current`'),
  })
  .strict();

const AppSchema = z
  .object({
    name: name.default('app').describe('the app name, used in messages'),
    build: z
      .object({
        command: z.string().min(1).describe('command (run in the inventory directory) that builds the app'),
        output: z.string().min(1).describe('directory the build writes; its files become the artifact'),
      })
      .strict(),
    service: ServiceSchema,
    health_path: z.string().startsWith('/').default('/healthz').describe('GET -> 200 when ready'),
    version_path: z.string().startsWith('/').default('/version').describe('GET -> JSON {release, digest}'),
    shared_dirs: z
      .array(sharedDir)
      .default(['data', 'logs', 'run'])
      .describe('directories under <deploy_to>/shared linked into every release; they outlive releases'),
    hashed_assets_dir: z
      .string()
      .regex(/^(?!\.{1,2}(?:\/|$))(?!.*\/\.{1,2}(?:\/|$))[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/, 'a relative path inside the release, without . or .. segments')
      .nullable()
      .default('public/assets')
      .describe(
        'directory of the release (relative to the build output) whose files are named by content hash; they are copied into <deploy_to>/assets on every instance before any activation and served from there by every release (null: no asset store)',
      ),
    session_store: z
      .enum(['local', 'redis'])
      .default('local')
      .describe('where the app keeps sessions: local (each instance\'s disk; a client stays on its instance) or redis (one Redis shared by every instance; set redis_url). Passed to the service as SESSION_STORE'),
    redis_url: z
      .string()
      .regex(/^rediss?:\/\/\S+$/, 'a redis:// or rediss:// URL, e.g. redis://10.0.0.5:6379/0')
      .optional()
      .describe('the Redis every instance shares its sessions in (required with session_store: redis); passed to the service as REDIS_URL'),
    env: z
      // Key rules are checked in the inventory's superRefine: zod reports a record key's own
      // message only as "Invalid key in record".
      .record(z.string(), z.string())
      .default({})
      .describe('extra environment for the service commands on every instance (e.g. SESSION_MAX_BYTES, SESSION_SECRET); the app hashes these into its config fingerprint'),
    checks: z
      .object({
        upload_paths: z.array(z.string().startsWith('/')).min(1).default(['/api/upload']),
        upload_field: z.string().min(1).default('file'),
        session_path: z.string().startsWith('/').default('/api/session'),
        concurrent_sessions: z.number().int().min(2).max(50).default(5),
      })
      .strict()
      .default({
        upload_paths: ['/api/upload'],
        upload_field: 'file',
        session_path: '/api/session',
        concurrent_sessions: 5,
      })
      .describe('post-deploy session isolation checks'),
  })
  .strict();

const HookCommand = z.string().min(1);

const HooksSchema = z
  .object({
    pre_deploy: HookCommand.optional().describe('local command before anything changes (exit non-zero: nothing changes)'),
    post_deploy: HookCommand.optional().describe('local command after a successful rollout'),
    before_activate: HookCommand.optional().describe('remote command in the new release dir before any instance is activated'),
    after_activate: HookCommand.optional().describe('remote command in `current` after each instance passed its gates'),
  })
  .strict();

const ProbeSchema = z
  .object({
    enabled: z.boolean().default(true).describe('send the rollout probe through the proxy while a deploy, rollback or repair runs'),
    rate_per_s: z.number().min(0.5).max(200).default(20).describe('probe requests per second (page loads, their assets and one session together)'),
    max_requests: z.number().int().min(1).max(1_000_000).default(10_000).describe('the probe stops sending after this many requests'),
    timeout_ms: z.number().int().min(100).default(30_000).describe('a probe request slower than this counts as failed (above proxy.hold_timeout_ms: a request the proxy holds while its instance restarts is slow, not failed)'),
  })
  .strict();

/** The `deploy.probe` section with every default applied. */
export const PROBE_SECTION_DEFAULTS = { enabled: true, rate_per_s: 20, max_requests: 10_000, timeout_ms: 30_000 };

const DeploySchema = z
  .object({
    concurrency: z.number().int().min(1).max(64).default(8).describe('instances worked on at once'),
    keep_releases: z.number().int().min(1).max(100).default(5).describe('releases the fleet keeps; a release is kept on every instance or on none'),
    free_space_margin_bytes: z
      .number()
      .int()
      .min(0)
      .default(104_857_600)
      .describe('bytes that must stay free on each instance after the artifact and the unpacked release are in place (free-space preflight)'),
    batch_size: z
      .union([z.number().int().min(1), z.string().regex(/^([1-9][0-9]?|100)%$/, 'a count, or a percentage like "50%"')])
      .default(1)
      .describe('instances activated per rollout batch: a count or a percentage of the fleet'),
    canary: z.boolean().default(false).describe('activate one instance alone first, then the batches'),
    pause_ms: z.number().int().min(0).default(0).describe('pause between two batches'),
    lock_ttl_ms: z.number().int().min(1000).default(3_600_000).describe('a lock older than this is stale'),
    hooks: HooksSchema.default({}),
    activation_timeout_ms: z.number().int().min(100).default(30_000).describe('health+version gate, per instance'),
    drain_timeout_ms: z.number().int().min(0).default(10_000),
    stability_window_ms: z.number().int().min(0).default(2_000).describe('after its gates pass, an instance must stay healthy, with the same process answering, this long before it is enabled (catches an app that answers once, then crashes); 0: off'),
    connect_timeout_ms: z.number().int().min(100).default(10_000).describe('bound on opening one SSH connection: TCP connect, banner, key exchange, authentication (ssh.connect_timeout_ms overrides)'),
    upload_timeout_ms: z.number().int().min(1000).default(600_000).describe('an artifact upload to one instance taking longer than this is aborted (then retried once)'),
    upload_no_progress_ms: z.number().int().min(500).default(15_000).describe('an artifact upload with no byte acknowledged for this long is aborted (then retried once)'),
    probe: ProbeSchema.default(PROBE_SECTION_DEFAULTS).describe('what users see during a deploy, rollback or repair (probe through the proxy); a failed probe request makes the exit code 1'),
  })
  .strict();

const SshSchema = z
  .object({
    user: z.string().min(1).optional().describe('login user (default: the current user)'),
    port: z.number().int().min(1).max(65535).default(22),
    identity_file: z.string().min(1).optional().describe('private key file (default: ~/.ssh/id_ed25519)'),
    known_hosts: z.string().min(1).default('.lockstep/known_hosts').describe('host keys Lockstep trusts'),
    connect_timeout_ms: z.number().int().min(100).optional().describe('bound on opening one connection (default: deploy.connect_timeout_ms)'),
    keepalive_interval_ms: z.number().int().min(100).default(2_500).describe('SSH keepalive probe every this many ms while a connection is idle on our side'),
    keepalive_count_max: z.number().int().min(1).max(100).default(3).describe('this many unanswered keepalives in a row: the host counts as lost (about interval x (count + 1))'),
  })
  .strict();


const InstanceSchema = z
  .object({
    name: name.describe('unique instance name'),
    transport: z.enum(['local', 'ssh']).default('ssh'),
    host: z.string().min(1).optional().describe('SSH host (required for transport: ssh)'),
    ssh_port: z.number().int().min(1).max(65535).optional().describe('overrides ssh.port'),
    user: z.string().min(1).optional().describe('overrides ssh.user'),
    deploy_to: absPath.describe('release root on the instance (relative paths: to the inventory, local only)'),
    app_address: z.string().min(1).optional().describe('address the app listens on (default: host, or 127.0.0.1)'),
    app_port: z.number().int().min(1).max(65535).describe('port the app listens on'),
    weight: z.number().int().min(1).max(1000).default(1).describe('share of new work in the proxy'),
    max_connections: z.number().int().min(1).optional().describe('proxy limit of concurrent requests to this instance'),
  })
  .strict()
  .superRefine((inst, ctx) => {
    if (inst.transport === 'ssh' && !inst.host) {
      ctx.addIssue({ code: 'custom', path: ['host'], message: 'required for transport: ssh' });
    }
    if (inst.transport === 'ssh' && !isAbsolute(inst.deploy_to)) {
      ctx.addIssue({ code: 'custom', path: ['deploy_to'], message: 'must be an absolute path for transport: ssh' });
    }
  });

export const InventorySchema = z
  .object({
    app: AppSchema,
    deploy: DeploySchema.default({
      concurrency: 8,
      keep_releases: 5,
      free_space_margin_bytes: 104_857_600,
      batch_size: 1,
      canary: false,
      pause_ms: 0,
      lock_ttl_ms: 3_600_000,
      hooks: {},
      activation_timeout_ms: 30_000,
      drain_timeout_ms: 10_000,
      stability_window_ms: 2_000,
      connect_timeout_ms: 10_000,
      upload_timeout_ms: 600_000,
      upload_no_progress_ms: 15_000,
      probe: PROBE_SECTION_DEFAULTS,
    }),
    ssh: SshSchema.default({ port: 22, known_hosts: '.lockstep/known_hosts', keepalive_interval_ms: 2_500, keepalive_count_max: 3 }),
    proxy: ProxySchema.optional(),
    instances: z.array(InstanceSchema).min(1, 'list at least one instance'),
  })
  .strict()
  .superRefine((inv, ctx) => {
    for (const key of Object.keys(inv.app.env)) {
      if (!/^[A-Z_][A-Z0-9_]*$/.test(key)) {
        ctx.addIssue({ code: 'custom', path: ['app', 'env', key], message: 'an environment variable name in capitals, digits and "_", e.g. SESSION_MAX_BYTES' });
      } else if (RESERVED_ENV.has(key)) {
        ctx.addIssue({ code: 'custom', path: ['app', 'env', key], message: `set by Lockstep itself (one of ${[...RESERVED_ENV].join(', ')}); use app.session_store / app.redis_url or the instance keys instead` });
      }
    }
    if (inv.app.session_store === 'redis' && !inv.app.redis_url) {
      ctx.addIssue({ code: 'custom', path: ['app', 'redis_url'], message: 'required with app.session_store: redis (e.g. redis://10.0.0.5:6379/0)' });
    }
    const seen = new Map<string, number>();
    inv.instances.forEach((inst, i) => {
      const first = seen.get(inst.name);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['instances', i, 'name'],
          message: `duplicate instance name "${inst.name}" (first used by instances[${first}])`,
        });
      } else seen.set(inst.name, i);
    });
  });

type RawInventory = z.infer<typeof InventorySchema>;

/** One instance with every default applied and every path resolved. */
export interface Instance {
  name: string;
  transport: 'local' | 'ssh';
  host: string;
  sshPort: number;
  user: string;
  /** Absolute release root on the instance. */
  deployTo: string;
  appAddress: string;
  appPort: number;
  /** Base URL of the app on this instance, e.g. http://127.0.0.11:4100 */
  url: string;
  /** Proxy weight (share of new work). */
  weight: number;
  /** Proxy limit of concurrent requests to this instance. */
  maxConnections?: number;
}

/** The validated inventory. Paths are absolute. */
export interface Inventory {
  file: string;
  dir: string;
  app: RawInventory['app'];
  deploy: RawInventory['deploy'];
  ssh: {
    port: number;
    identityFile: string;
    knownHosts: string;
    user: string;
    /** Bound on opening one connection, ms (ssh.connect_timeout_ms, else deploy.connect_timeout_ms). */
    connectTimeoutMs: number;
    keepaliveIntervalMs: number;
    keepaliveCountMax: number;
  };
  /** `admin_tls` and `admin_ca_file` paths are absolute here; `stateDir` is `state_dir` resolved. */
  proxy?: RawInventory['proxy'] & { adminTokenFile: string; stateDir: string };
  instances: Instance[];
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? os.homedir() + p.slice(1) : p;
}

export { proxySectionDefaults } from './proxy-schema.ts';

/**
 * The `proxy` section with its file paths made absolute (relative to the inventory's directory).
 * @param proxy the validated section. @param dir the inventory's directory.
 */
export function resolveProxyPaths(proxy: NonNullable<RawInventory['proxy']>, dir: string): NonNullable<Inventory['proxy']> {
  const abs = (p: string): string => resolve(dir, expandHome(p));
  return {
    ...proxy,
    ...(proxy.admin_tls ? { admin_tls: { cert_file: abs(proxy.admin_tls.cert_file), key_file: abs(proxy.admin_tls.key_file) } } : {}),
    ...(proxy.admin_ca_file !== undefined ? { admin_ca_file: abs(proxy.admin_ca_file) } : {}),
    adminTokenFile: abs(proxy.admin_token_file),
    stateDir: abs(proxy.state_dir),
  };
}

function lineOf(doc: ReturnType<typeof parseDocument>, counter: LineCounter, path: (string | number)[]): number | undefined {
  // Walk down as far as the path exists; report the deepest node found (the key's line).
  let node: unknown = doc.contents;
  let line: number | undefined = node && (node as YamlNode).range ? counter.linePos((node as YamlNode).range![0]).line : undefined;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === key);
      if (!pair) break;
      const keyNode = pair.key as YamlNode | null;
      if (keyNode?.range) line = counter.linePos(keyNode.range[0]).line;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
      if ((node as YamlNode | undefined)?.range) line = counter.linePos((node as YamlNode).range![0]).line;
    } else break;
  }
  return line;
}

function fieldName(path: PropertyKey[]): string {
  return path
    .map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i === 0 ? '' : '.'}${String(k)}`))
    .join('');
}

/**
 * Parse and validate an inventory from YAML text.
 * @param text YAML source. @param file its path (for messages and to resolve relative paths).
 * @returns the inventory with defaults applied and paths resolved.
 * @throws ConfigError naming file, line and field for YAML syntax errors, missing fields,
 *   wrong types, unknown keys and duplicate instance names.
 */
export function parseInventory(text: string, file: string): Inventory {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const err = doc.errors[0]!;
    const line = counter.linePos(err.pos[0]).line;
    throw new ConfigError(`${file}:${line}: invalid YAML: ${err.message.split('\n')[0]}`, { file, line });
  }
  const result = InventorySchema.safeParse(doc.toJS());
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const line = lineOf(doc, counter, issue.path as (string | number)[]);
      const field = fieldName(issue.path) || '(top level)';
      let msg = issue.message;
      if (issue.code === 'invalid_type' && /received undefined/.test(msg)) msg = 'missing (required)';
      if (issue.code === 'unrecognized_keys') msg = `unknown key(s) ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      return { text: `${file}:${line ?? 1}: field "${field}": ${msg}`, line, field };
    });
    const first = lines[0]!;
    const err = new ConfigError(lines.map((l) => l.text).join('\n'), { file, line: first.line, field: first.field });
    throw err;
  }
  const raw = result.data;
  const dir = dirname(resolve(file));
  const currentUser = os.userInfo().username;
  const sshUser = raw.ssh.user ?? currentUser;
  const instances: Instance[] = raw.instances.map((inst) => {
    const host = inst.host ?? '127.0.0.1';
    const appAddress = inst.app_address ?? (inst.transport === 'ssh' ? host : '127.0.0.1');
    return {
      name: inst.name,
      transport: inst.transport,
      host,
      sshPort: inst.ssh_port ?? raw.ssh.port,
      user: inst.user ?? sshUser,
      deployTo: inst.transport === 'local' ? resolve(dir, expandHome(inst.deploy_to)) : inst.deploy_to,
      appAddress,
      appPort: inst.app_port,
      url: `http://${appAddress.includes(':') ? `[${appAddress}]` : appAddress}:${inst.app_port}`,
      weight: inst.weight,
      ...(inst.max_connections !== undefined ? { maxConnections: inst.max_connections } : {}),
    };
  });
  return {
    file: resolve(file),
    dir,
    app: raw.app,
    deploy: raw.deploy,
    ssh: {
      port: raw.ssh.port,
      user: sshUser,
      identityFile: resolve(dir, expandHome(raw.ssh.identity_file ?? '~/.ssh/id_ed25519')),
      knownHosts: resolve(dir, expandHome(raw.ssh.known_hosts)),
      connectTimeoutMs: raw.ssh.connect_timeout_ms ?? raw.deploy.connect_timeout_ms,
      keepaliveIntervalMs: raw.ssh.keepalive_interval_ms,
      keepaliveCountMax: raw.ssh.keepalive_count_max,
    },
    proxy: raw.proxy ? resolveProxyPaths(raw.proxy, dir) : undefined,
    instances,
  };
}

/**
 * Load and validate an inventory file.
 * @throws ConfigError when the file is missing or invalid (see parseInventory).
 */
export function loadInventory(file: string): Inventory {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `cannot read inventory ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}. ` +
        'Pass --inventory FILE or create inventory.yaml (see README).',
      { file },
    );
  }
  return parseInventory(text, file);
}
