/**
 * Outbound source addresses (issue 17, item 3; Layer7Router's `-client_base_ip`,
 * `-client_start_ip`, `-client_end_ip`): a pool's `local_addresses` spread its NEW connections
 * to targets over several local IPs, round robin, so one target can take more than the ~28K
 * ephemeral ports a single source address gives it. Connections already open are kept as they
 * are (keep-alive reuse does not rotate).
 *
 * One module for every kind of pool: HTTP pools pass `next()` as undici's `localAddress`
 * (upstream/connector.ts); the TCP pools of issue 17 item 2 call the same `SourceAddresses`
 * for `net.connect({ localAddress })`.
 *
 * An entry is one IP (`10.0.0.5`, `fd00::5`) or an inclusive IPv4 range (`127.0.0.2-127.0.0.9`);
 * every address must be local to this host, checked against `os.networkInterfaces()` when the
 * config is compiled — binding a socket to an address the host does not have fails every
 * connect (EADDRNOTAVAIL), better refused at start.
 */
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { CompileProblem } from '../lib/problem.ts';
import { type Cidr, cidrContains, parseCidr, parseIp } from '../lib/ip.ts';

/** More would only be a typo (a /8 written as a range); Layer7Router's ranges are a few hundred. */
export const MAX_LOCAL_ADDRESSES = 4096;

const V4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function v4ToInt(ip: string): number {
  return ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

function intToV4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

const NOT_ONE = 'is not an IP address or an IPv4 range such as "127.0.0.2-127.0.0.9"';

/** The addresses of one entry, or why it is not one. */
function expand(entry: string): string[] | string {
  const s = entry.trim();
  const dash = s.indexOf('-');
  if (dash === -1) {
    if (isIP(s) === 0) return `${JSON.stringify(entry)} ${NOT_ONE}`;
    return [s];
  }
  const from = s.slice(0, dash).trim();
  const to = s.slice(dash + 1).trim();
  if (!V4.test(from) || !V4.test(to) || isIP(from) !== 4 || isIP(to) !== 4)
    return `${JSON.stringify(entry)} ${NOT_ONE}`;
  const a = v4ToInt(from);
  const b = v4ToInt(to);
  if (b < a) return `${JSON.stringify(entry)}: the range ends before it starts`;
  if (b - a + 1 > MAX_LOCAL_ADDRESSES) return `${JSON.stringify(entry)}: more than ${MAX_LOCAL_ADDRESSES} addresses`;
  const out: string[] = [];
  for (let n = a; n <= b; n++) out.push(intToV4(n));
  return out;
}

/**
 * What this host can bind: every interface address, and on Linux every address of a loopback
 * interface's prefix — the kernel routes all of 127.0.0.0/8 to `lo` as local although
 * `networkInterfaces()` lists only 127.0.0.1 (on macOS only configured aliases bind).
 */
export function localNetworks(): Cidr[] {
  const out: Cidr[] = [];
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      const exact = parseCidr(a.address);
      if (exact) out.push(exact);
      if (a.internal && process.platform === 'linux' && a.cidr) {
        const net = parseCidr(a.cidr);
        if (net) out.push(net);
      }
    }
  }
  return out;
}

export function isLocalAddress(address: string, networks: readonly Cidr[] = localNetworks()): boolean {
  const ip = parseIp(address);
  return ip !== null && networks.some((n) => cidrContains(n, ip));
}

/**
 * Compiles `local_addresses` (a string or a list) found at `path`: the addresses in order,
 * duplicates dropped. Pushes a problem for an entry that is not an address or range, for
 * too many, and for every address this host does not have.
 */
export function compileLocalAddresses(
  raw: string | readonly string[] | undefined,
  path: Array<string | number>,
  problems: CompileProblem[],
): string[] {
  if (raw === undefined) return [];
  const list = typeof raw === 'string' ? [raw] : raw;
  const at = (i: number) => (typeof raw === 'string' ? path : [...path, i]);
  const out = new Set<string>();
  let networks: Cidr[] | null = null;
  list.forEach((entry, i) => {
    const addrs = expand(entry);
    if (typeof addrs === 'string') {
      problems.push({ path: at(i), message: addrs });
      return;
    }
    networks ??= localNetworks();
    const foreign = addrs.filter((a) => !isLocalAddress(a, networks!));
    if (foreign.length > 0) {
      const shown = foreign.length > 3 ? `${foreign.slice(0, 3).join(', ')} and ${foreign.length - 3} more` : foreign.join(', ');
      problems.push({
        path: at(i),
        message: `${shown} ${foreign.length === 1 ? 'is' : 'are'} not an address of this host (os.networkInterfaces())`,
      });
      return;
    }
    for (const a of addrs) out.add(a);
  });
  if (out.size > MAX_LOCAL_ADDRESSES)
    problems.push({ path, message: `more than ${MAX_LOCAL_ADDRESSES} addresses` });
  return [...out];
}

/**
 * Round robin over source addresses: `next()` is the address for the next new connection
 * (undefined when there are none: let the kernel choose). One per pool and process, shared by
 * all of the pool's targets, so the rotation spreads the pool's connections as a whole and
 * each target's too.
 */
export class SourceAddresses {
  readonly addresses: readonly string[];
  #i = 0;

  constructor(addresses: readonly string[]) {
    this.addresses = addresses;
  }

  next(): string | undefined {
    const n = this.addresses.length;
    if (n === 0) return undefined;
    const a = this.addresses[this.#i];
    this.#i = (this.#i + 1) % n;
    return a;
  }

  /** Only addresses of the target's family can reach it: an IPv4 source for an IPv6 target fails. */
  nextFor(family: 4 | 6 | 0): string | undefined {
    const n = this.addresses.length;
    for (let k = 0; k < n; k++) {
      const a = this.next()!;
      if (family === 0 || isIP(a) === family) return a;
    }
    return undefined;
  }
}
