/**
 * IP address and CIDR arithmetic on 16-byte arrays. IPv4 is held in its IPv4-mapped IPv6
 * form (`::ffff:a.b.c.d`), so one comparison covers both families and an IPv4 CIDR also
 * matches the mapped spelling of the same address (they reach the same host). Shared by the
 * multiplex SSRF guard, the admin API's special-target check and `local_addresses` (in lib/
 * since issue 17: upstream/ may not import multiplex/).
 */
import { isIP } from 'node:net';

export type IpBytes = Uint8Array;

export interface Cidr {
  readonly bytes: IpBytes;
  /** Prefix length in the 128-bit space (an IPv4 `/8` is stored as `/104`). */
  readonly bits: number;
}

/** Parses an IPv4 or IPv6 literal (brackets and a `%zone` suffix tolerated); null if it is none. */
export function parseIp(text: string): IpBytes | null {
  let s = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  const kind = isIP(s);
  if (kind === 4) return mapV4(s.split('.').map(Number));
  if (kind !== 6) return null;
  const out = new Uint8Array(16);
  let v4: number[] | null = null;
  const lastColon = s.lastIndexOf(':');
  if (s.indexOf('.', lastColon) !== -1) {
    v4 = s
      .slice(lastColon + 1)
      .split('.')
      .map(Number);
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = s.split('::');
  const left = halves[0] ? halves[0].split(':') : [];
  const right = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const groups = [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right];
  for (let i = 0; i < 8; i++) {
    const g = Number.parseInt(groups[i], 16);
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  }
  if (v4) out.set(v4, 12);
  return out;
}

export function mapV4(octets: ArrayLike<number>): IpBytes {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(octets, 12);
  return out;
}

/** `a.b.c.d/n` or `x::y/n`; a bare address is a single-address CIDR. Host bits are masked off. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf('/');
  const addr = slash === -1 ? text : text.slice(0, slash);
  const v4 = isIP(addr) === 4;
  const bytes = parseIp(addr);
  if (!bytes || addr.includes('%')) return null;
  const max = v4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return null;
    prefix = Number(p);
  }
  const bits = v4 ? prefix + 96 : prefix;
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] &= (0xff00 >> keep) & 0xff;
  }
  return { bytes, bits };
}

export function cidrContains(cidr: Cidr, ip: IpBytes): boolean {
  const whole = cidr.bits >> 3;
  for (let i = 0; i < whole; i++) if (ip[i] !== cidr.bytes[i]) return false;
  const rest = cidr.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return (ip[whole] & mask) === cidr.bytes[whole];
}
