/**
 * Server-side request forgery guard for multiplex targets.
 *
 * The check runs where the socket gets its address — in the `lookup` handed to
 * `net.connect`/`tls.connect`, and on the literal for IP targets — so the address checked is
 * the address connected to (no gap between check and connect for a DNS answer to change in).
 * The connector also re-checks `socket.remoteAddress` once connected, as a second line.
 */
import type { LookupFunction, Socket } from 'node:net';
import { isIP } from 'node:net';
import { buildConnector } from 'undici';
import type { Resolve, ResolvedAddress } from '../lib/dns.ts';
import { type Cidr, cidrContains, type IpBytes, mapV4, parseCidr, parseIp } from '../lib/ip.ts';

export const ADDRESS_CLASSES = Object.freeze({
  unspecified: 'unspecified',
  loopback: 'loopback',
  private: 'private',
  'link-local': 'link-local',
  multicast: 'multicast',
  broadcast: 'broadcast',
  reserved: 'reserved',
} as const);

export type AddressClass = keyof typeof ADDRESS_CLASSES;

// First match wins. IPv4 ranges match their IPv4-mapped form too (see lib/ip.ts).
const SPECIAL: ReadonlyArray<readonly [Cidr, AddressClass]> = (
  [
    ['0.0.0.0/8', 'unspecified'],
    ['10.0.0.0/8', 'private'],
    ['100.64.0.0/10', 'private'], // carrier-grade NAT; also Alibaba's 100.100.100.200 metadata
    ['127.0.0.0/8', 'loopback'],
    ['169.254.0.0/16', 'link-local'], // includes the 169.254.169.254 cloud metadata service
    ['172.16.0.0/12', 'private'],
    ['192.0.0.0/24', 'reserved'], // IETF assignments; Oracle's 192.0.0.192 metadata
    ['192.0.2.0/24', 'reserved'],
    ['192.88.99.0/24', 'reserved'],
    ['192.168.0.0/16', 'private'],
    ['198.18.0.0/15', 'private'],
    ['198.51.100.0/24', 'reserved'],
    ['203.0.113.0/24', 'reserved'],
    ['224.0.0.0/4', 'multicast'],
    ['255.255.255.255/32', 'broadcast'],
    ['240.0.0.0/4', 'reserved'],
    ['::/128', 'unspecified'],
    ['::1/128', 'loopback'],
    ['::/96', 'reserved'], // deprecated IPv4-compatible form
    ['64:ff9b:1::/48', 'private'], // local-use NAT64 (RFC 8215)
    ['100::/64', 'reserved'],
    ['2001:db8::/32', 'reserved'],
    ['fc00::/7', 'private'], // unique local; AWS's fd00:ec2::254 metadata
    ['fe80::/10', 'link-local'],
    ['fec0::/10', 'private'], // deprecated site-local
    ['ff00::/8', 'multicast'],
  ] as const
).map(([cidr, cls]) => [parseCidr(cidr)!, cls] as const);

/**
 * IPv4 address carried inside an IPv6 one, where a packet to the IPv6 address ends up at the
 * IPv4 one: mapped `::ffff:0:0/96`, translated `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`,
 * 6to4 `2002::/16`, Teredo `2001::/32` (client address, bit-inverted, and the server).
 */
function embeddedV4(ip: IpBytes): IpBytes[] {
  const zeros = (from: number, to: number) => ip.subarray(from, to).every((b) => b === 0);
  const last = ip.subarray(12, 16);
  if (zeros(0, 10) && ip[10] === 0xff && ip[11] === 0xff) return [mapV4(last)];
  if (zeros(0, 8) && ip[8] === 0xff && ip[9] === 0xff && zeros(10, 12)) return [mapV4(last)];
  if (ip[0] === 0 && ip[1] === 0x64 && ip[2] === 0xff && ip[3] === 0x9b && zeros(4, 12)) return [mapV4(last)];
  if (ip[0] === 0x20 && ip[1] === 0x02) return [mapV4(ip.subarray(2, 6))];
  if (ip[0] === 0x20 && ip[1] === 0x01 && ip[2] === 0 && ip[3] === 0) {
    return [mapV4(ip.subarray(4, 8)), mapV4(last.map((b) => ~b & 0xff))];
  }
  return [];
}

function lookupSpecial(ip: IpBytes): AddressClass | null {
  for (const [cidr, cls] of SPECIAL) if (cidrContains(cidr, ip)) return cls;
  return null;
}

/** The special-use class of an address (null for an ordinary public one); unwraps embedded IPv4. */
export function classifyAddress(address: string | IpBytes): AddressClass | null {
  const ip = typeof address === 'string' ? parseIp(address) : address;
  if (!ip) return 'reserved';
  const own = lookupSpecial(ip);
  if (own) return own;
  for (const inner of embeddedV4(ip)) {
    const cls = lookupSpecial(inner);
    if (cls) return cls;
  }
  return null;
}

/** One compiled `allow` list: host patterns and CIDRs (a bare IP counts as a single-address CIDR). */
export interface AllowList {
  /** Exact lowercase names. */
  readonly names: ReadonlySet<string>;
  /** `*.example.com` → `.example.com`: matches any name below it, not the apex itself. */
  readonly suffixes: readonly string[];
  readonly cidrs: readonly Cidr[];
  /** `*`: any host name (public addresses only; special-use ones still need a CIDR). */
  readonly anyName: boolean;
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Compiles allow entries; returns the index and reason of the first invalid entry instead. */
export function compileAllowList(entries: readonly string[]): AllowList | { index: number; reason: string } {
  const names = new Set<string>();
  const suffixes: string[] = [];
  const cidrs: Cidr[] = [];
  let anyName = false;
  for (const [index, raw] of entries.entries()) {
    const entry = raw.trim().toLowerCase();
    if (entry === '*') {
      anyName = true;
      continue;
    }
    if (entry.includes('/') || isIP(entry) !== 0) {
      const cidr = parseCidr(entry);
      if (!cidr) return { index, reason: `not a valid CIDR: ${JSON.stringify(raw)}` };
      cidrs.push(cidr);
      continue;
    }
    const wildcard = entry.startsWith('*.');
    const name = normalizeHost(wildcard ? entry.slice(2) : entry);
    if (!name.split('.').every((label) => LABEL.test(label))) {
      return { index, reason: `not a host name, "*.domain" pattern or CIDR: ${JSON.stringify(raw)}` };
    }
    if (wildcard) suffixes.push(`.${name}`);
    else names.add(name);
  }
  return { names, suffixes, cidrs, anyName };
}

export function normalizeHost(host: string): string {
  const h = host.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

export class ForbiddenTargetError extends Error {
  readonly code = 'MANIFOLD_FORBIDDEN_TARGET';
  override readonly name = 'ForbiddenTargetError';
}

export class TargetDnsError extends Error {
  readonly code = 'MANIFOLD_DNS';
  override readonly name = 'TargetDnsError';
}

/**
 * Decides whether a target may be connected to. Without an allow list any ordinary public
 * address is allowed. With one, a target must match a host pattern or resolve into an allowed
 * CIDR; special-use addresses are refused unless they are inside an allowed CIDR (a host
 * pattern alone never opens loopback or private space).
 */
export class TargetGuard {
  readonly #allow: AllowList | null;

  constructor(allow: AllowList | null) {
    this.#allow = allow;
  }

  #nameAllowed(host: string): boolean {
    const allow = this.#allow;
    if (!allow || allow.anyName) return true;
    const name = normalizeHost(host);
    return allow.names.has(name) || allow.suffixes.some((s) => name.endsWith(s) && name.length > s.length);
  }

  /** Refusal reason known before resolving a name (saves a DNS query), or null. */
  refuseName(host: string): string | null {
    const allow = this.#allow;
    if (!allow || allow.cidrs.length > 0 || this.#nameAllowed(host)) return null;
    return `${host} is not in the allow list`;
  }

  /**
   * Refusal reason for connecting to `address` for the target host `host`, or null. For a
   * name the reason gives the address's class but not the address: batch callers must not
   * learn how internal names resolve.
   */
  refuseAddress(host: string, address: string): string | null {
    const ip = parseIp(address);
    const literal = isIP(host) !== 0;
    if (!ip) return `${host} did not resolve to an IP address`;
    if (this.#allow?.cidrs.some((c) => cidrContains(c, ip))) return null;
    const cls = classifyAddress(ip);
    if (cls) return literal ? `${address} is a ${cls} address` : `${host} resolves to a ${cls} address`;
    if (!this.#nameAllowed(host)) return `${literal ? address : host} is not in the allow list`;
    return null;
  }
}

export type { Resolve, ResolvedAddress };

/**
 * Wraps `resolve` so that it answers only with the addresses the guard allows for the name:
 * names the allow list cannot match are refused before any query, a name left with no
 * allowed address fails with ForbiddenTargetError, and resolver failures become
 * TargetDnsError. Everything that resolves a multiplex target name goes through this: undici's
 * dns interceptor (dns.ts), whose cache therefore only ever holds checked addresses, and the
 * connector's lookup below.
 */
export function guardedResolve(guard: TargetGuard, resolve: Resolve): Resolve {
  return async (hostname) => {
    const early = guard.refuseName(hostname);
    if (early) throw new ForbiddenTargetError(early);
    let records: ResolvedAddress[];
    try {
      records = await resolve(hostname);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      const why = typeof code === 'string' ? code : String((err as Error | null)?.message ?? err);
      throw new TargetDnsError(`could not resolve ${hostname} (${why})`, { cause: err });
    }
    let refusal = `${hostname} has no address`;
    const allowed: ResolvedAddress[] = [];
    for (const r of records) {
      const why = guard.refuseAddress(hostname, r.address);
      if (why) refusal = why;
      else allowed.push(r);
    }
    if (allowed.length === 0) throw new ForbiddenTargetError(refusal);
    return allowed;
  };
}

/**
 * A `net.connect` lookup over `guardedResolve`: the socket is handed only allowed addresses;
 * if none of the family asked for is left it fails with ForbiddenTargetError.
 */
export function guardedLookup(guard: TargetGuard, resolve: Resolve): LookupFunction {
  const checked = guardedResolve(guard, resolve);
  return (hostname, options, callback) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
    checked(hostname).then(
      (records) => {
        const allowed = family ? records.filter((r) => r.family === family) : records;
        if (allowed.length === 0)
          callback(new ForbiddenTargetError(`${hostname} has no address of family ${family}`), '');
        else if (options.all) callback(null, allowed.map((r) => ({ address: r.address, family: r.family })));
        else callback(null, allowed[0].address, allowed[0].family);
      },
      (err: Error) => callback(err, ''),
    );
  };
}

/**
 * undici connector: IP targets (literal, or pinned by the dns interceptor) are checked before
 * dialing, names go through the guarded lookup, and the connected socket's peer address is
 * checked once more.
 */
export function guardedConnector(
  guard: TargetGuard,
  resolve: Resolve,
  options: buildConnector.BuildOptions,
): buildConnector.connector {
  const connect = buildConnector({ ...options, lookup: guardedLookup(guard, resolve) });
  return (opts, callback) => {
    // An IP with a servername is a name undici's dns interceptor resolved (through
    // guardedResolve) and pinned: it is checked, and re-checked below, as that name.
    const ip = isIP(opts.hostname) !== 0;
    const host = ip && opts.servername ? opts.servername : opts.hostname;
    const literal = ip ? guard.refuseAddress(host, opts.hostname) : null;
    if (literal) {
      callback(new ForbiddenTargetError(literal), null);
      return;
    }
    connect(opts, (err, socket) => {
      if (err) {
        callback(err, null);
        return;
      }
      const peer = (socket as Socket).remoteAddress;
      const why =
        peer === undefined
          ? `${host}: connected socket has no peer address`
          : guard.refuseAddress(host, peer);
      if (why) {
        (socket as Socket).destroy();
        callback(new ForbiddenTargetError(why), null);
        return;
      }
      callback(null, socket as Socket);
    });
  };
}
