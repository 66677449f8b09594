// The rollout probe only watches a fleet that served pages before the operation: on a first
// deploy every request would fail, so it is skipped and says why.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadInventory, type Inventory } from '../../config/inventory.ts';
import { withRolloutProbe } from '../../deployer/cli/probe.ts';
import { freePort } from '../helpers/sshd.ts';

const repoInventory = loadInventory(resolve(import.meta.dirname, '../../inventory.yaml'));
let server: Server | undefined;
afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

function withListen(listen: string): Inventory {
  return { ...repoInventory, proxy: { ...repoInventory.proxy!, listen }, deploy: { ...repoInventory.deploy, probe: { ...repoInventory.deploy.probe, enabled: true, rate_per_s: 50, max_requests: 20 } } };
}

describe('rollout probe start', () => {
  it('is skipped, with one line saying why, when nothing answers the page through the proxy', async () => {
    const notes: string[] = [];
    const { result, probe } = await withRolloutProbe(withListen(`127.0.0.1:${await freePort('127.0.0.1')}`), true, async () => 'done', (l) => notes.push(l));
    expect(result).toBe('done');
    expect(probe).toBeNull();
    expect(notes.join('\n')).toMatch(/rollout probe skipped: the fleet served no page/);
  });

  it('runs when the page answers 200 before the operation', async () => {
    let seen = 0;
    server = createServer((_req, res) => {
      seen++;
      res.end('<html><head></head><body>ok</body></html>');
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const notes: string[] = [];
    // The operation lasts until the probe has sent requests of its own (after the serving check's
    // one), bounded at 10 s: no assumption on how fast the probe starts on a loaded machine.
    const operation = async (): Promise<void> => {
      const until = Date.now() + 10_000;
      const start = seen;
      while (seen < start + 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    };
    const { probe } = await withRolloutProbe(withListen(`127.0.0.1:${(server.address() as AddressInfo).port}`), true, operation, (l) => notes.push(l));
    expect(notes).toEqual([]);
    expect(probe).not.toBeNull();
    expect(probe!.requests).toBeGreaterThan(0);
  });
});
