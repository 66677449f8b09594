/**
 * vitest globalSetup: the end-to-end tests need a real OpenSSH server binary. When it is
 * missing, install it as root (CI machines run as root), otherwise fail with one line naming
 * the package. Costs one stat() when sshd is already there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { SSHD } from './sshd.ts';

export default function setup(): void {
  if (!existsSync(SSHD)) {
    if (process.getuid?.() !== 0) {
      throw new Error('sshd not found: install the Debian package openssh-server (apt-get install openssh-server)');
    }
    console.log('[global-setup] sshd not found: installing openssh-server with apt-get (running as root)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
    execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'openssh-server', 'openssh-client'], { stdio: 'inherit', env });
    if (!existsSync(SSHD)) throw new Error('sshd not found after apt-get install openssh-server');
  }
  // sshd refuses to start as root without its privilege-separation directory.
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
}
