// The sshd check of the vitest global setup, with the machine (file system, apt-get) faked:
// installing packages for real is not something a test run should do.
import { describe, expect, it } from 'vitest';
import { ensureSshd, SSHD_MISSING, type SshdSetupDeps } from '../helpers/global-setup.ts';

function fake(present: boolean[], isRoot: boolean) {
  const calls: string[] = [];
  const logs: string[] = [];
  let checks = 0;
  const deps: SshdSetupDeps = {
    exists: () => present[Math.min(checks++, present.length - 1)]!,
    isRoot,
    run: (command, args, env) => {
      calls.push(`${env.DEBIAN_FRONTEND} ${command} ${args.join(' ')}`);
    },
    log: (line) => logs.push(line),
  };
  return { deps, calls, logs };
}

describe('ensureSshd', () => {
  it('does nothing when sshd is there', () => {
    const f = fake([true], false);
    ensureSshd(f.deps);
    expect(f.calls).toEqual([]);
    expect(f.logs).toEqual([]);
  });

  it('fails with one line naming the package when sshd is missing and we are not root', () => {
    const f = fake([false], false);
    expect(() => ensureSshd(f.deps)).toThrow(SSHD_MISSING);
    expect(SSHD_MISSING).not.toContain('\n');
    expect(SSHD_MISSING).toContain('openssh-server');
    expect(f.calls).toEqual([]);
  });

  it('installs openssh-server with apt-get as root, and says so', () => {
    const f = fake([false, true], true);
    ensureSshd(f.deps);
    expect(f.calls).toEqual([
      'noninteractive apt-get update',
      'noninteractive apt-get install -y --no-install-recommends openssh-server openssh-client',
    ]);
    expect(f.logs.join('\n')).toMatch(/installing .*openssh-server/);
  });

  it('fails when the install did not produce sshd', () => {
    const f = fake([false, false], true);
    expect(() => ensureSshd(f.deps)).toThrow(/still missing/);
  });
});
