/**
 * Typed errors for the deployer. Callers branch on `code`; people read `message`.
 * Every error carries the process exit code the CLI should end with (see DESIGN.md):
 * 1 a check found a problem, 2 usage or configuration error, 3 an operation failed part-way.
 * The CLI turns these into one clear line each (never a stack trace) in `deployer/cli.ts`.
 */
export class LockstepError extends Error {
  readonly code: string;
  readonly exitCode: 1 | 2 | 3;
  /** Extra human lines shown under the message (e.g. the state left behind). */
  readonly details: string[];

  constructor(code: string, message: string, exitCode: 1 | 2 | 3, details: string[] = []) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
    this.details = details;
  }
}

/** Bad inventory, bad option, missing file: exit 2. `file`/`line`/`field` locate the problem. */
export class ConfigError extends LockstepError {
  constructor(
    message: string,
    readonly location: { file?: string; line?: number; field?: string } = {},
  ) {
    super('LOCKSTEP_CONFIG', message, 2);
  }
}

/** A host's SSH key differs from the one recorded in known_hosts. Always refused. */
export class HostKeyMismatchError extends LockstepError {
  constructor(
    readonly host: string,
    readonly expectedFingerprints: string[],
    readonly actualFingerprint: string,
    readonly knownHostsFile: string,
  ) {
    super(
      'LOCKSTEP_HOST_KEY_MISMATCH',
      `host key for ${host} has CHANGED: known_hosts (${knownHostsFile}) has ${expectedFingerprints.join(', ')}, ` +
        `the host presented ${actualFingerprint}. Refusing to connect. If the host was really re-installed, ` +
        `remove its line from ${knownHostsFile} and run \`lockstep hosts trust\`.`,
      3,
    );
  }
}

/** A host that is not in known_hosts at all. Refused unless the operator trusts it explicitly. */
export class UnknownHostKeyError extends LockstepError {
  constructor(
    readonly host: string,
    readonly actualFingerprint: string,
    readonly knownHostsFile: string,
  ) {
    super(
      'LOCKSTEP_HOST_KEY_UNKNOWN',
      `host ${host} is not in ${knownHostsFile} (it presented ${actualFingerprint}). Refusing to connect. ` +
        `Check the fingerprint out of band, then run \`lockstep hosts trust\` to record it.`,
      3,
    );
  }
}

/** An instance could not be reached (connect, auth or a dead session). */
export class UnreachableInstanceError extends LockstepError {
  constructor(
    readonly instance: string,
    readonly reason: string,
  ) {
    super('LOCKSTEP_UNREACHABLE', `instance ${instance} is unreachable: ${reason}`, 3);
  }
}

/**
 * A file transfer to an instance that stalled (no progress), took longer than its bound, or was
 * interrupted by a signal. The partial file never reached its final path.
 */
export class TransferError extends LockstepError {
  constructor(
    readonly instance: string,
    readonly path: string,
    readonly reason: string,
    /** True when a signal (Ctrl-C, SIGTERM) stopped it: do not retry. */
    readonly interrupted: boolean,
  ) {
    super('LOCKSTEP_TRANSFER', `upload to ${instance} (${path}) ${reason}`, 3);
  }
}

/** A remote command exited non-zero or by a signal. */
export class RemoteCommandError extends LockstepError {
  constructor(
    readonly instance: string,
    readonly command: string,
    readonly exitStatus: number | null,
    readonly signal: string | null,
    readonly stderr: string,
  ) {
    const how = signal ? `was killed by ${signal}` : exitStatus === null ? 'ended with no exit status' : `exited ${exitStatus}`;
    const tail = stderr.trim().split('\n').slice(-3).join(' | ');
    // The command itself can be kilobytes (exported env, scripts): its start is enough to know it.
    const first = command.split('\n')[0]!;
    const shown = first.length > 100 ? `${first.slice(0, 100)}...` : first;
    super('LOCKSTEP_REMOTE_COMMAND', `on ${instance}: \`${shown}\` ${how}${tail ? `: ${tail}` : ''}`, 3);
  }
}

/** An artifact or file whose sha256 on the host differs from the manifest. */
export class ChecksumMismatchError extends LockstepError {
  constructor(
    readonly instance: string,
    readonly path: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(
      'LOCKSTEP_CHECKSUM_MISMATCH',
      `checksum mismatch on ${instance} for ${path}: expected sha256 ${expected}, host has ${actual}`,
      3,
    );
  }
}

/** Another deploy holds the lock on an instance. */
export class LockHeldError extends LockstepError {
  constructor(
    readonly instance: string,
    readonly holder: Record<string, unknown>,
  ) {
    super(
      'LOCKSTEP_LOCK_HELD',
      holder.kind === 'maintenance'
        ? `instance ${instance} is locked for maintenance by ${String(holder.user ?? '?')}@${String(holder.machine ?? '?')} ` +
            `since ${String(holder.time ?? '?')}: "${String(holder.message ?? '')}" (\`lockstep lock release\` ends it)`
        : `instance ${instance} is locked by ${String(holder.user ?? '?')}@${String(holder.machine ?? '?')} ` +
            `(pid ${String(holder.pid ?? '?')}, since ${String(holder.time ?? '?')}, release ${String(holder.release ?? '?')}` +
            `${holder.message ? `, message "${String(holder.message)}"` : ''})`,
      3,
    );
  }
}

/** A health or version gate did not pass within its timeout. */
export class GateFailedError extends LockstepError {
  constructor(
    readonly instance: string,
    message: string,
  ) {
    super('LOCKSTEP_GATE_FAILED', `instance ${instance}: ${message}`, 3);
  }
}
