// Usage errors of the CLI exit 2 with one line naming the option, before any instance is contacted.
import { describe, expect, it, vi } from 'vitest';
import { main } from '../../deployer/cli/index.ts';

async function run(argv: string[]): Promise<{ code: number; stderr: string }> {
  const lines: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  });
  try {
    return { code: await main(argv), stderr: lines.join('') };
  } finally {
    spy.mockRestore();
  }
}

describe('cli usage errors', () => {
  it.each([['abc'], ['0'], ['-2'], ['1.5']])('history -n %s exits 2 naming the option', async (n) => {
    const r = await run(['history', '-n', n, '--inventory', '/nonexistent/inventory.yaml']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('-n/--limit');
    // Refused before the inventory was even read.
    expect(r.stderr).not.toContain('/nonexistent/inventory.yaml');
  });
});
