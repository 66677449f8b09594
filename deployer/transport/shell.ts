/**
 * Shell quoting and script text for the whole deployer (one module, one quoting rule). The
 * transports both run a command as `bash -c <script>` where the script first exports the
 * requested environment and changes directory, so `cwd`/`env` mean the same thing over SSH and
 * locally (and SSH needs no `AcceptEnv` on the server); the remote command builders quote every
 * value with `shq`.
 */

/**
 * Quote one value as a single POSIX shell word: wrapped in single quotes, with each embedded
 * single quote written as '\'' (POSIX.1-2017, Shell Command Language, 2.2.2 Single-Quotes).
 * A value made only of characters no shell treats specially is returned as it is, so builder
 * output stays readable. This is the one quoting function of the deployer: every value that goes
 * into a remote or local command passes through it.
 * @param value any string without a NUL byte. @returns the quoted word.
 * @throws Error for a NUL byte, which no argument or environment value can hold.
 */
export function shq(value: string): string {
  if (value.includes('\0')) throw new Error('a shell argument cannot contain a NUL byte');
  if (/^[A-Za-z0-9_./:=@%+-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The bash script that runs `command` with `env` exported and `cwd` as working directory.
 * A `cwd` that does not exist makes the script exit 1 with bash's message on stderr, before
 * the command runs.
 * @throws Error for an environment name that is not a shell identifier (a programming error:
 *   quoting cannot make such a name safe).
 */
export function buildScript(command: string, options: { cwd?: string; env?: Record<string, string> } = {}): string {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (!ENV_NAME.test(name)) throw new Error(`invalid environment variable name ${JSON.stringify(name)}`);
    lines.push(`export ${name}=${shq(value)}`);
  }
  if (options.cwd !== undefined) lines.push(`cd -- ${shq(options.cwd)} || exit 1`);
  lines.push(command);
  return lines.join('\n');
}

/**
 * Prefix `script` with a watchdog that, after `timeoutMs`, sends SIGTERM to the script's whole
 * process group and SIGKILL 5 s later, unless the script has ended.
 *
 * Why not an SSH "signal" channel request: OpenSSH refuses it when it runs the session in its
 * monitor process, which is the case for root logins ("session signalling requires privilege
 * separation", OpenSSH session.c), and deploys often log in as root. sshd starts every session
 * in a new session/process group (setsid) and the caller `exec`s bash, so the script's pid is
 * the group id, and a group kill reaches everything the command started in the foreground.
 * The script itself dies by the signal, so sshd reports an exit signal, not an exit code.
 * The watchdog polls every 0.2 s whether the script is still alive and then exits quietly, so
 * it never outlives a command that finished in time (and never kills what it left running).
 */
export function withWatchdog(script: string, timeoutMs: number): string {
  const ticks = Math.max(1, Math.ceil(timeoutMs / 200));
  // Double fork: the watchdog is not a child of the script's shell, so a `wait` in the command
  // does not wait for it (it would never end before the timeout). `$$` in a subshell is still
  // the script's pid.
  const watchdog = [
    '( (',
    "  trap '' TERM",
    '  i=0',
    `  while kill -0 $$ 2>/dev/null; do`,
    `    if [ "$i" -ge ${ticks} ]; then kill -TERM -- -$$; sleep 5; kill -KILL -- -$$; exit 0; fi`,
    '    i=$((i + 1)); sleep 0.2',
    '  done',
    ') </dev/null >/dev/null 2>&1 & )',
  ].join('\n');
  return `${watchdog}\n${script}`;
}
