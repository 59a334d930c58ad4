/**
 * Issue 15, item 14: targets added through the admin API may not point at special-use
 * addresses (cloud metadata, link-local, …) unless their pool says so in
 * `allow_special_targets`; the classes are the multiplex SSRF guard's.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { cidrContains, parseCidr, parseIp } from '../lib/ip.ts';
import { type AddressClass, classifyAddress } from '../multiplex/ssrf.ts';

/**
 * Special-use address classes a pool may name in `allow_special_targets`: the multiplex
 * guard's classes, plus `metadata` — the cloud metadata services (169.254.169.254,
 * fd00:ec2::254, Alibaba's 100.100.100.200, Oracle's 192.0.0.192), refused unless named even
 * where their wider class is allowed.
 */
export type SpecialClass = AddressClass | 'metadata';

const METADATA = ['169.254.169.254', 'fd00:ec2::254', '100.100.100.200', '192.0.0.192'].map((a) => parseCidr(a)!);

/** Admin-added targets may be loopback or private (backends usually are), nothing else special. */
export const DEFAULT_SPECIAL_TARGETS: readonly SpecialClass[] = Object.freeze(['loopback', 'private']);

/** Compared as bytes (lib/ip.ts), so every spelling counts: `::ffff:a9fe:a9fe` is 169.254.169.254. */
function classOf(address: string): SpecialClass | null {
  const ip = parseIp(address);
  if (ip !== null && METADATA.some((m) => cidrContains(m, ip))) return 'metadata';
  return classifyAddress(ip ?? address);
}

/**
 * Why an admin-added target may not be used (null when it may): its host, or every address
 * its name resolves to now, must be public or of a class in `allowed`. Checked when the
 * target is added; a name that later resolves elsewhere is not re-checked (README).
 */
export async function specialTargetProblem(url: string, allowed: readonly SpecialClass[]): Promise<string | null> {
  const host = new URL(url).hostname;
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  let addresses: string[];
  if (isIP(bare) !== 0) addresses = [bare];
  else {
    try {
      addresses = (await lookup(bare, { all: true })).map((a) => a.address);
    } catch {
      return null; // unresolvable now: health checks and attempts will say so
    }
  }
  for (const address of addresses) {
    const cls = classOf(address);
    if (cls !== null && !allowed.includes(cls))
      return `${host} is ${address === bare ? '' : `${address}, `}a ${cls} address; list "${cls}" in pools.<name>.allow_special_targets to allow it`;
  }
  return null;
}
