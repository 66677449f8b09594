/**
 * Host subsets (`--instances web-1,web-3`, `--instances 'web-*'`): the one function that turns
 * an operator's selection into instance names of the inventory, for every verb that takes it
 * (deploy, rollback, status, drift, logs, exec).
 */
import picomatch from 'picomatch';
import { ConfigError } from '../../config/errors.ts';
import type { Inventory } from '../../config/inventory.ts';

/** Split on commas that are not inside `{...}` (a brace list is one glob: `{db,web}-1`). */
function splitOutsideBraces(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}') depth = Math.max(0, depth - 1);
    else if (text[i] === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/**
 * Resolve a selection against the inventory.
 * @param inventory the fleet. @param spec comma-separated instance names and globs (picomatch:
 *   `*`, `?`, `[12]`, `{a,b}`); several `--instances` options may be given (an array). Undefined
 *   or empty means "no selection".
 * @returns the selected names in inventory order (each once), or undefined when there is no selection.
 * @throws ConfigError (exit 2) for a name the inventory does not list or a glob that matches no
 *   instance, naming it and listing the inventory's instances.
 */
export function selectInstances(inventory: Pick<Inventory, 'instances' | 'file'>, spec: string | string[] | undefined): string[] | undefined {
  const words = (Array.isArray(spec) ? spec : spec === undefined ? [] : [spec])
    .flatMap(splitOutsideBraces)
    .map((s) => s.trim())
    .filter(Boolean);
  if (words.length === 0) return undefined;
  const names = inventory.instances.map((i) => i.name);
  const chosen = new Set<string>();
  for (const word of words) {
    const isGlob = picomatch.scan(word).isGlob;
    const isMatch = isGlob ? picomatch(word, { dot: true }) : (n: string) => n === word;
    const matched = names.filter((n) => isMatch(n));
    if (matched.length === 0) {
      throw new ConfigError(
        `--instances: ${isGlob ? `the pattern "${word}" matches no instance` : `no instance named "${word}"`} in ${inventory.file}; its instances are: ${names.join(', ')}`,
        { file: inventory.file, field: '--instances' },
      );
    }
    for (const m of matched) chosen.add(m);
  }
  return names.filter((n) => chosen.has(n));
}

/** True when `selected` names a strict subset of the inventory's instances. */
export function isPartial(inventory: Pick<Inventory, 'instances'>, selected: string[] | undefined): selected is string[] {
  return selected !== undefined && selected.length < inventory.instances.length;
}
