/**
 * `lockstep exec -- CMD` (Kamal's `app exec`): run one command in `<deploy_to>/current` on every
 * selected instance with the service environment (the same env the service commands get:
 * fleet/instance.ts serviceEnv, docs/ARCHITECTURE.md "App contract"), at most N at once, and
 * collect each instance's exit status and output.
 */
import pLimit from 'p-limit';
import type { Inventory } from '../../config/inventory.ts';
import { openFleet, type TransportFactory } from './fleet.ts';
import { serviceEnv } from './instance.ts';
import * as cmd from '../remote/commands.ts';

/** What CMD did on one instance. `exitCode` null: killed by `signal`, or never ran (`error`). */
export interface ExecOutcome {
  instance: string;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  /** Wall time of the command on this instance, ms. */
  durationMs: number;
  /** Why the command could not run (unreachable instance, no `current`). */
  error?: string;
}

export interface FleetExecOptions {
  /** Instance names (fleet/selection.ts); default every instance. */
  instances?: string[];
  /** Commands running at once (default `deploy.concurrency`). */
  concurrency?: number;
  /** Stop CMD on an instance after this many ms (SIGTERM to its process group, SIGKILL 5 s later). */
  timeoutMs?: number;
  factory?: TransportFactory;
  /** Called once per instance as soon as its command ended (output is printed then, whole). */
  onDone?: (outcome: ExecOutcome) => void;
}

/**
 * Run `command` (bash text) on every selected instance, in `current`, with the service env.
 * @returns one outcome per instance in inventory order; never throws for an instance failure.
 */
export async function execOnFleet(inventory: Inventory, command: string, options: FleetExecOptions = {}): Promise<ExecOutcome[]> {
  const fleet = openFleet(inventory, { factory: options.factory, instanceNames: options.instances });
  const limit = pLimit(Math.max(1, options.concurrency ?? inventory.deploy.concurrency));
  try {
    return await Promise.all(
      fleet.ops.map((o) =>
        limit(async (): Promise<ExecOutcome> => {
          const started = Date.now();
          let outcome: ExecOutcome;
          try {
            await o.transport.connect();
            const r = await o.transport.exec(cmd.execInCurrent(o.layout, command), {
              env: serviceEnv(o.instance, o.layout),
              ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
            });
            outcome = { instance: o.name, exitCode: r.code, signal: r.signal, stdout: r.stdout, stderr: r.stderr, durationMs: Date.now() - started };
          } catch (e) {
            outcome = { instance: o.name, exitCode: null, signal: null, stdout: '', stderr: '', durationMs: Date.now() - started, error: (e as Error).message };
          }
          options.onDone?.(outcome);
          return outcome;
        }),
      ),
    );
  } finally {
    await fleet.close();
  }
}
