/**
 * Local deploy hooks (`deploy.hooks.pre_deploy` and `post_deploy`): commands that run on the
 * deployer's machine, in the inventory's directory. Remote hooks run through InstanceOps.runHook.
 */
import { $ } from 'zx/core';
import { LockstepError } from '../../config/errors.ts';
import type { Inventory } from '../../config/inventory.ts';

/**
 * Run a local hook command in the inventory's directory with LOCKSTEP_HOOK, LOCKSTEP_RELEASE and
 * LOCKSTEP_DIGEST set. @throws LockstepError LOCKSTEP_HOOK_FAILED with its exit status.
 */
export async function runLocalHook(inventory: Inventory, hook: string, command: string, release: { release: string; digest: string }): Promise<void> {
  const env = { ...process.env, LOCKSTEP_HOOK: hook, LOCKSTEP_RELEASE: release.release, LOCKSTEP_DIGEST: release.digest };
  const r = await $({ cwd: inventory.dir, env, stdio: ['ignore', 'pipe', 'pipe'], nothrow: true, quiet: true })`/bin/bash -c ${command}`;
  if (r.exitCode !== 0 || r.signal) {
    const tail = `${r.stdout}\n${r.stderr}`.trim().split('\n').slice(-3).join(' | ');
    throw new LockstepError('LOCKSTEP_HOOK_FAILED', `${hook} hook \`${command}\` failed (${r.signal ? `signal ${r.signal}` : `exit ${r.exitCode}`})${tail ? `: ${tail}` : ''}`, 3);
  }
}
