/**
 * vitest globalSetup: the end-to-end tests need a real OpenSSH server binary and the browser
 * tests Debian's chromium. When one is missing, install it as root (CI machines run as root),
 * otherwise fail with one line naming the package. Costs one stat() each when both are there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { SSHD, SSHD_MISSING } from './sshd.ts';

export { SSHD_MISSING };

export interface SshdSetupDeps {
  exists: (path: string) => boolean;
  isRoot: boolean;
  /** Run a command with inherited stdio; throws when it fails. */
  run: (command: string, args: string[], env: NodeJS.ProcessEnv) => void;
  log: (line: string) => void;
}

const realDeps: SshdSetupDeps = {
  exists: existsSync,
  isRoot: process.getuid?.() === 0,
  run: (command, args, env) => {
    execFileSync(command, args, { stdio: 'inherit', env });
  },
  log: (line) => console.log(line),
};

/**
 * Make sure `/usr/sbin/sshd` exists: nothing to do when it does; as root, install the Debian
 * package openssh-server with apt-get (saying so); otherwise throw one line naming the package.
 * @throws Error(SSHD_MISSING) when not root; the apt-get failure when installing fails.
 */
export function ensureSshd(deps: SshdSetupDeps = realDeps): void {
  if (deps.exists(SSHD)) return;
  if (!deps.isRoot) throw new Error(SSHD_MISSING);
  deps.log('[global-setup] sshd not found: installing the Debian package openssh-server with apt-get (running as root)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  deps.run('apt-get', ['update'], env);
  deps.run('apt-get', ['install', '-y', '--no-install-recommends', 'openssh-server', 'openssh-client'], env);
  if (!deps.exists(SSHD)) throw new Error(`${SSHD_MISSING} (apt-get ran but ${SSHD} is still missing)`);
}

/** Where the browser tests find chromium (CHROMIUM_PATH overrides, as in tests/app/browser.test.ts). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Make sure chromium exists for the browser tests: as root, install the Debian package chromium
 * with apt-get (saying so); otherwise throw one line naming the package.
 * @throws Error naming the package when not root; the apt-get failure when installing fails.
 */
export function ensureChromium(deps: SshdSetupDeps = realDeps): void {
  if (deps.exists(CHROMIUM)) return;
  const missing = `${CHROMIUM} not found: install the Debian package chromium (apt-get install chromium), or set CHROMIUM_PATH`;
  if (!deps.isRoot) throw new Error(missing);
  deps.log('[global-setup] chromium not found: installing the Debian package chromium with apt-get (running as root)');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  deps.run('apt-get', ['update'], env);
  deps.run('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], env);
  if (!deps.exists(CHROMIUM)) throw new Error(`${missing} (apt-get ran but it is still missing)`);
}

export default function setup(): void {
  ensureSshd();
  ensureChromium();
  // sshd refuses to start as root without its privilege-separation directory.
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
}
