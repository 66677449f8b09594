// `lockstep hosts trust` (trustHosts) against real sshd hosts (127.0.0.71, ...).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.ts';
import { trustHosts } from '../../deployer/transport/trust.ts';
import { loadInventory } from '../../config/inventory.ts';
import { createTransport } from '../../deployer/transport/index.ts';
import { startSshHosts, type SshFleet } from '../helpers/sshd.ts';

let fleet: SshFleet;

beforeAll(async () => {
  fleet = await startSshHosts(3, { baseAddress: '127.0.0.71' });
});
afterAll(async () => {
  await fleet?.stop();
});

describe('trustHosts', () => {
  it('adds unknown hosts, keeps known ones, refuses changed keys, reports unreachable hosts', async () => {
    const knownHosts = join(fleet.dir, 'trust', 'known_hosts');
    const inventory = loadInventory(fleet.writeInventory({ knownHosts }));
    const [h1, h2, h3] = fleet.hosts as [NonNullable<(typeof fleet.hosts)[0]>, NonNullable<(typeof fleet.hosts)[0]>, NonNullable<(typeof fleet.hosts)[0]>];

    // Nothing is trusted yet: a deploy-style connection is refused.
    await expect(createTransport(inventory.instances[0]!, inventory).connect()).rejects.toMatchObject({ code: 'LOCKSTEP_HOST_KEY_UNKNOWN' });
    expect(existsSync(knownHosts)).toBe(false);

    const first = await trustHosts(inventory);
    expect(first).toEqual(
      fleet.hosts.map((h) => ({ instance: h.name, host: h.address, port: h.port, fingerprint: h.hostKeyFingerprint, status: 'added' })),
    );
    for (const h of fleet.hosts) {
      expect(execFileSync('ssh-keygen', ['-F', `[${h.address}]:${h.port}`, '-f', knownHosts], { encoding: 'utf8' })).toContain(
        readFileSync(`${h.hostKeyFile}.pub`, 'utf8').trim(),
      );
    }
    // Now a normal connection verifies and authenticates.
    const t = createTransport(inventory.instances[1]!, inventory);
    expect(await t.exec('echo trusted')).toMatchObject({ code: 0, stdout: 'trusted\n' });
    await t.close();

    const second = await trustHosts(inventory);
    expect(second.map((r) => r.status)).toEqual(['already-known', 'already-known', 'already-known']);
    const recorded = readFileSync(knownHosts, 'utf8');
    expect(recorded.trim().split('\n')).toHaveLength(3);

    const oldFingerprint = h2.hostKeyFingerprint;
    const newFingerprint = await fleet.replaceHostKey(h2.name);
    await fleet.stopHost(h3.name);
    const third = await trustHosts(inventory);
    expect(third[0]).toMatchObject({ instance: h1.name, status: 'already-known' });
    expect(third[1]).toEqual({
      instance: h2.name,
      host: h2.address,
      port: h2.port,
      fingerprint: newFingerprint,
      status: 'changed-refused',
      expected: [oldFingerprint],
    });
    expect(third[2]).toMatchObject({ instance: h3.name, fingerprint: null, status: 'unreachable' });
    expect(third[2]!.reason).toMatch(/connection refused/);
    // The changed key was not recorded, nothing was replaced.
    expect(readFileSync(knownHosts, 'utf8')).toBe(recorded);
    await fleet.startHost(h3.name);
  });

  it('limits the run to named instances and rejects unknown names', async () => {
    const knownHosts = join(fleet.dir, 'trust-some', 'known_hosts');
    const inventory = loadInventory(fleet.writeInventory({ knownHosts }));
    const only = fleet.hosts[0]!.name;
    const results = await trustHosts(inventory, { instances: [only] });
    expect(results.map((r) => [r.instance, r.status])).toEqual([[only, 'added']]);
    expect(readFileSync(knownHosts, 'utf8').trim().split('\n')).toHaveLength(1);
    await expect(trustHosts(inventory, { instances: ['no-such-instance'] })).rejects.toBeInstanceOf(ConfigError);
  });
});
