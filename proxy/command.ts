/**
 * `lockstep proxy`: run the proxy in the foreground for an inventory until SIGTERM or SIGINT
 * (graceful stop), reloading the instance list from the inventory file on SIGHUP.
 */
import pino, { type Logger } from 'pino';
import { ConfigError } from '../config/errors.ts';
import type { Inventory } from '../config/inventory.ts';
import { ProxyConfigError } from './config.ts';
import { startEngine, type RunningEngine } from './engine.ts';
import type { RunningProxy } from './index.ts';

export type { RunningProxy, RunningEngine };

export interface RunProxyOptions {
  /** pino level for the JSON log on stderr (state changes only). Default: env LOCKSTEP_LOG, else `info`. */
  logLevel?: string;
  /** Logger to use instead of creating one (the level option is then ignored). */
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Where the human lines go. Default: stdout. */
  print?: (line: string) => void;
  /** Stops the proxy like SIGTERM does (for embedding, e.g. `lockstep demo`). */
  signal?: AbortSignal;
  /** Called once the proxy listens (engine lockstep only). */
  onStarted?: (proxy: RunningProxy) => void;
  /** Called once the engine listens, whichever it is. */
  onEngineStarted?: (engine: RunningEngine) => void;
  /**
   * Worker processes sharing the port (worker mode, proxy/cluster.ts). Default: env
   * LOCKSTEP_PROXY_WORKERS, else 1. On a machine that also runs the app instances, 1 leaves them the
   * other cores; on a dedicated proxy host, one per core.
   */
  workers?: number;
}

/**
 * Start the proxy for `inventory`, print where it listens, and run until SIGTERM/SIGINT (or
 * `options.signal`), then stop gracefully, with the engine of `proxy.engine` (engine.ts: Lockstep's own
 * proxy, or a supervised HAProxy). SIGHUP re-reads `inventory.file` and replaces the
 * instance list without dropping connections (an invalid file is logged and ignored).
 * @returns the exit code: 0 after a graceful stop; 1 when the engine died on its own (HAProxy exited).
 * @throws ConfigError (exit 2) for an invalid proxy configuration or a listen address in use.
 */
export async function runProxyCommand(inventory: Inventory, options: RunProxyOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const logger = options.logger ?? pino({ level: options.logLevel ?? env.LOCKSTEP_LOG ?? 'info' }, pino.destination(2));
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));

  const workers = options.workers ?? Number(env.LOCKSTEP_PROXY_WORKERS ?? inventory.proxy?.workers ?? 1);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
    throw new ConfigError(`proxy: workers must be an integer 1..64 (got ${String(options.workers ?? env.LOCKSTEP_PROXY_WORKERS)})`);
  }
  // Signal handlers go in before anything else: a SIGHUP or SIGTERM that arrives while the proxy
  // starts must not kill it with the default action (and a stop request is honoured once started).
  let proxy: RunningEngine | null = null;
  let stopWhy: string | null = null;
  let wake: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  const requestStop = (why: string): void => {
    if (stopWhy !== null) return;
    stopWhy = why;
    wake();
  };
  const onTerm = (): void => requestStop('SIGTERM');
  const onInt = (): void => requestStop('SIGINT');
  const onAbort = (): void => requestStop('stop requested');
  const onHup = (): void => {
    if (proxy === null) return logger.warn('SIGHUP while starting: ignored');
    try {
      void proxy.reloadFromInventory().then(
        (c) => logger.info(c, 'reloaded the instance list from the inventory (SIGHUP)'),
        (err: unknown) => logger.error({ err }, 'reload failed; keeping the current instances'),
      );
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'reload failed: inventory invalid; keeping the current instances');
    }
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  process.on('SIGHUP', onHup);
  if (options.signal?.aborted) requestStop('stop requested');
  else options.signal?.addEventListener('abort', onAbort);
  const removeHandlers = (): void => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
    options.signal?.removeEventListener('abort', onAbort);
  };

  try {
    proxy = await startEngine(inventory, { env, logger, workers });
  } catch (e) {
    removeHandlers();
    const err = e as NodeJS.ErrnoException;
    if (e instanceof ProxyConfigError) throw new ConfigError(`proxy: ${err.message}`, { file: inventory.file });
    if (err.code === 'EADDRINUSE' || err.code === 'EADDRNOTAVAIL' || err.code === 'EACCES' || /could not start: .*(EADDRINUSE|EACCES)/.test(err.message)) {
      throw new ConfigError(`proxy: cannot listen (${err.code}): ${err.message}. Check proxy.listen / proxy.admin_listen in ${inventory.file}`, {
        file: inventory.file,
      });
    }
    throw e;
  }
  const mode = proxy.engine === 'haproxy' ? ', engine haproxy' : workers > 1 ? `, ${workers} workers` : '';
  const lines = await proxy.describe();
  print(`lockstep proxy listening on ${proxy.url} (admin API ${proxy.adminUrl}${mode}), ${lines.length} instance(s):`);
  for (const l of lines) print(l);
  let died: string | null = null;
  void proxy.died?.then((why) => {
    died = why;
    requestStop(why);
  });
  if (proxy.proxy) options.onStarted?.(proxy.proxy);
  options.onEngineStarted?.(proxy);

  await stopped;
  removeHandlers();
  print(`lockstep proxy stopping (${stopWhy ?? 'stop requested'}): letting in-flight requests finish`);
  await proxy.close();
  print('lockstep proxy stopped');
  return died === null ? 0 : 1;
}
