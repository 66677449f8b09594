/**
 * Fetching a host's key without logging in, for `lockstep hosts trust` (what ssh-keyscan does).
 */
import ssh2 from 'ssh2';
import type { ServerHostKeyAlgorithm } from 'ssh2';
import { preferredHostKeyAlgorithms } from './known-hosts.ts';

/**
 * Fetch the host key a server presents, without authenticating (like `ssh-keyscan`): the key
 * exchange is stopped in the host verifier, so no user name or signature is ever sent.
 * @param recordedTypes key types known for the host, asked for first (see preferredHostKeyAlgorithms).
 * @returns the raw public key blob.
 * @throws Error with a readable message when the host cannot be reached within timeoutMs.
 */
export function probeHostKey(host: string, port: number, recordedTypes: string[], timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let key: Buffer | undefined;
    client.on('error', (err: Error & { code?: unknown }) => {
      client.end();
      if (key) resolve(key);
      else if (err.code === 'ECONNREFUSED') reject(new Error(`connection refused by ${host}:${port}`));
      else reject(new Error(`no SSH host key from ${host}:${port}: ${err.message}`));
    });
    client.on('close', () => {
      if (key) resolve(key);
      else reject(new Error(`connection to ${host}:${port} closed before the host key was received`));
    });
    client.connect({
      host,
      port,
      username: 'lockstep-host-key-probe',
      readyTimeout: timeoutMs,
      algorithms: { serverHostKey: preferredHostKeyAlgorithms(recordedTypes) as ServerHostKeyAlgorithm[] },
      hostVerifier: (blob: Buffer, verify: (ok: boolean) => void) => {
        key = Buffer.from(blob);
        verify(false);
      },
    });
  });
}
