/** Shared by the SSH transport tests: transports to the sshd test hosts, closed with the fleet. */
import { SshTransport, type SshTransportOptions } from '../../deployer/transport/ssh.ts';
import type { SshFleet, SshHost } from '../helpers/sshd.ts';

/** A transport to `host` using the fleet's key and known_hosts; remembered in `open` for closing. */
export function openTransport(fleet: SshFleet, open: SshTransport[], host: SshHost, extra: Partial<SshTransportOptions> = {}): SshTransport {
  const t = new SshTransport({
    instance: host.name,
    host: host.address,
    port: host.port,
    user: fleet.user,
    identityFile: fleet.identityFile,
    knownHostsFile: fleet.knownHostsFile,
    ...extra,
  });
  open.push(t);
  return t;
}

/** Close every transport in `open`, then stop the fleet (if it started). */
export async function closeFleet(fleet: SshFleet | undefined, open: SshTransport[]): Promise<void> {
  await Promise.all(open.map((t) => t.close()));
  await fleet?.stop();
}
