/**
 * POSIX shell quoting for the remote command builders. Every value that goes into a remote
 * command passes through `shq`, so paths with spaces or quotes cannot break out of an argument.
 */

/**
 * Quote one value as a single POSIX shell word: wrapped in single quotes, with each embedded
 * single quote written as '\'' (POSIX.1-2017, Shell Command Language, 2.2.2 Single-Quotes).
 * @param value any string. @returns the quoted word.
 */
export function shq(value: string): string {
  if (/^[A-Za-z0-9_./:=@%+-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * `NAME=value ...` assignments for running a command with extra environment.
 * @throws Error when a name is not a valid shell variable name.
 */
export function envPrefix(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`invalid environment variable name: ${k}`);
      return `${k}=${shq(v)}`;
    })
    .join(' ');
}
