/**
 * The `--instances` option every fleet verb shares (deploy, rollback, status, drift, logs, exec)
 * and the loud line a partial deploy or rollback prints. The selection rule is fleet/selection.ts.
 */
import { Option } from 'commander';
import type { Inventory } from '../../config/inventory.ts';
import { selectInstances } from '../fleet/selection.ts';

/** `--instances web-1,web-3` / `--instances 'web-*'` (repeatable). */
export function instancesOption(what: string): Option {
  return new Option('--instances <names...>', `only these instances (${what}): names and globs, comma-separated (e.g. web-1,web-3 or 'web-*')`);
}

/**
 * The selected instance names, or undefined when `--instances` was not given.
 * @throws ConfigError (exit 2) naming an unknown instance or a glob that matches nothing.
 */
export function selectionFrom(o: { instances?: string[] }, inventory: Inventory): string[] | undefined {
  return selectInstances(inventory, o.instances);
}

/**
 * The warning after a deploy or rollback of a subset that left the fleet on more than one
 * release (`state` starts with MIXED FLEET, rollout/run.ts describeFleetState); null otherwise.
 */
export function partialWarning(verb: 'deploy' | 'rollback', selected: string[] | undefined, inventory: Inventory, state: string, release: string): string | null {
  if (!selected || !state.startsWith('MIXED FLEET')) return null;
  const others = inventory.instances.map((i) => i.name).filter((n) => !selected.includes(n));
  return [
    `PARTIAL ${verb.toUpperCase()}: only ${selected.join(', ')} ${verb === 'deploy' ? 'activated' : 'rolled back to'} ${release}; ${others.join(', ')} were not touched.`,
    `THE FLEET IS NOW MIXED (${state.replace(/^MIXED FLEET: /, '')}): users may see either release; \`lockstep status\` and \`lockstep drift\` report it until the fleet is one release again (\`lockstep deploy --release ${release}\` for all, or \`lockstep rollback\`).`,
  ].join('\n');
}

/**
 * `MIXED FLEET: web-1=R1, web-2=R2, ...` when the instances' running releases (from /version,
 * else `current` on disk) differ: what a partial deploy leaves; null when they are one release.
 */
export function mixedFleetLine(rows: { instance: string; current: { release: string } | null; running: { release: string | null } | null }[]): string | null {
  const release = (r: (typeof rows)[number]): string => r.running?.release ?? r.current?.release ?? 'none';
  if (new Set(rows.map(release)).size <= 1) return null;
  return `MIXED FLEET: ${rows.map((r) => `${r.instance}=${release(r)}`).join(', ')} (a partial deploy or rollback, or one that failed part-way)`;
}
