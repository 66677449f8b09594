/**
 * The logging the transports do, as a minimal interface a pino logger satisfies, so the CLI can
 * pass its pino instance (`--log-level`, LOCKSTEP_LOG) and tests can pass nothing.
 * What is logged: instance, host, port, user, host-key fingerprints, the first line of each
 * command, exit code/signal and duration. Never: key material, env values, file contents.
 */
export interface TransportLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** A logger that drops everything (the default). */
export const silentLogger: TransportLogger = {
  debug() {},
  info() {},
  warn() {},
};

/** The first line of a command, cut to 200 characters: enough to recognise it in a log. */
export function commandSummary(command: string): string {
  const first = command.split('\n')[0]!;
  return first.length > 200 ? `${first.slice(0, 200)}...` : first;
}
