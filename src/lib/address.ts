/**
 * The client's address as it is recorded (XFF, Forwarded, hash selector, per-client limit):
 * an IPv4-mapped IPv6 address from a dual-stack listener (`::ffff:127.0.0.1`) is the IPv4
 * address it carries (issue 15, item 11).
 */
export function clientAddress(remote: string | undefined): string {
  if (remote === undefined) return '';
  if (remote.length > 7 && remote.charCodeAt(0) === 58 /* : */ && /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(remote))
    return remote.slice(7);
  return remote;
}
