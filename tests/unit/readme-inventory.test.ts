// The README's inventory table is the documentation of the schema: every key the schema
// accepts must have its own row, and every row must name a key the schema accepts.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { InventorySchema } from '../../config/inventory.ts';

/** Strip default/optional/effects wrappers down to the underlying schema. */
function unwrap(s: z.ZodType): z.ZodType {
  let cur: z.ZodType = s;
  for (let i = 0; i < 10; i++) {
    const def = (cur as unknown as { _zod: { def: { type: string; innerType?: z.ZodType; in?: z.ZodType } } })._zod.def;
    if (def.innerType) cur = def.innerType;
    else if (def.type === 'pipe' && def.in) cur = def.in;
    else break;
  }
  return cur;
}

function leafKeys(s: z.ZodType, prefix: string): string[] {
  const u = unwrap(s);
  if (u instanceof z.ZodObject) {
    return Object.entries(u.shape as Record<string, z.ZodType>).flatMap(([k, v]) => leafKeys(v, prefix ? `${prefix}.${k}` : k));
  }
  if (u instanceof z.ZodArray) {
    const el = unwrap(u.element as z.ZodType);
    if (el instanceof z.ZodObject) return leafKeys(el, `${prefix}[]`);
  }
  return [prefix];
}

describe('README inventory table', () => {
  const readme = readFileSync(resolve(import.meta.dirname, '../../README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\| `([a-z_.[\]]+)` \|/gm)].map((m) => m[1]!);
  const keys = leafKeys(InventorySchema, '');

  it('documents every schema key in its own row', () => {
    expect(keys.length).toBeGreaterThan(30);
    expect(keys.filter((k) => !rows.includes(k))).toEqual([]);
  });

  it('documents no key the schema does not accept', () => {
    const inventoryRows = rows.filter((r) => /^(app|deploy|ssh|proxy|instances)\b/.test(r));
    expect(inventoryRows.filter((r) => !keys.includes(r))).toEqual([]);
  });
});
