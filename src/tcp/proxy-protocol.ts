/**
 * The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2) a TCP
 * listener may send to a target first, so the target learns the client's address although
 * the connection comes from the gateway (issue 17, item 2). Built once per connection from
 * the downstream socket's two ends; IPv4-mapped IPv6 addresses (a dual-stack listener) are
 * sent as the IPv4 address they carry, as `clientAddress` records them elsewhere.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { clientAddress } from '../lib/address.ts';
import { parseIp } from '../lib/ip.ts';

export interface Endpoints {
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
}

/** v2's fixed 12-byte signature (§2.2). */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function family(src: string, dst: string): 4 | 6 | null {
  if (isIPv4(src) && isIPv4(dst)) return 4;
  if (isIPv6(src) && isIPv6(dst)) return 6;
  return null;
}

/** `PROXY TCP4 src dst sport dport\r\n`, or `PROXY UNKNOWN\r\n` when the two ends do not share a family (§2.1). */
export function proxyV1(s: Endpoints): Buffer {
  const src = clientAddress(s.remoteAddress);
  const dst = clientAddress(s.localAddress);
  const fam = family(src, dst);
  if (fam === null || s.remotePort === undefined || s.localPort === undefined) return Buffer.from('PROXY UNKNOWN\r\n');
  return Buffer.from(`PROXY TCP${fam} ${src} ${dst} ${s.remotePort} ${s.localPort}\r\n`, 'latin1');
}

/** The binary header, command PROXY over TCP, or with family UNSPEC when the ends are not known (§2.2). */
export function proxyV2(s: Endpoints): Buffer {
  const src = clientAddress(s.remoteAddress);
  const dst = clientAddress(s.localAddress);
  const fam = family(src, dst);
  if (fam === null || s.remotePort === undefined || s.localPort === undefined)
    return Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x00, 0x00, 0x00])]);
  const a = parseIp(src)!;
  const b = parseIp(dst)!;
  const size = fam === 4 ? 4 : 16;
  const out = Buffer.alloc(16 + size * 2 + 4);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // version 2, command PROXY
  out[13] = fam === 4 ? 0x11 : 0x21; // TCP over IPv4 / IPv6
  out.writeUInt16BE(size * 2 + 4, 14);
  out.set(a.subarray(16 - size), 16);
  out.set(b.subarray(16 - size), 16 + size);
  out.writeUInt16BE(s.remotePort, 16 + size * 2);
  out.writeUInt16BE(s.localPort, 18 + size * 2);
  return out;
}
