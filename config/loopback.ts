/**
 * Which addresses count as loopback: the rule the proxy's admin API and the deployer's admin
 * client share (plain HTTP and the admin token stay on loopback; anything else needs TLS).
 */
import { isIP } from 'node:net';

/**
 * True for `localhost`, the whole of 127.0.0.0/8 (RFC 1122 3.2.1.3: every 127.x.y.z address is
 * loopback, not only 127.0.0.1), `::1` and IPv4-mapped `::ffff:127.x.y.z`. False for everything
 * else, including `0.0.0.0` and `::` (every interface) and host names other than `localhost`
 * (they may resolve anywhere).
 * @param host an address or host name, IPv6 with or without brackets.
 */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (isIP(h) !== 6) return false;
  return h === '::1' || h === '0:0:0:0:0:0:0:1' || (h.startsWith('::ffff:') && isIP(h.slice(7)) === 4 && h.slice(7).startsWith('127.'));
}
