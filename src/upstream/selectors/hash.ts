import { clientAddress } from '../../lib/address.ts';
import type { HashKey } from '../spec.ts';
import type { Target } from '../target.ts';
import { randomEligible } from './random.ts';
import { eligible, type PickContext, type Selector } from './types.ts';

/** FNV-1a over UTF-16 code units, then murmur3's finalizer for avalanche. */
function hash32(s: string, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function cookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function hashKeyOf(key: HashKey, ctx: PickContext | null): string | undefined {
  if (ctx === null) return undefined;
  if (key.kind === 'client_ip') return clientAddress(ctx.socket.remoteAddress);
  if (key.kind === 'cookie') return cookie(ctx.headers.cookie, key.name);
  const v = ctx.headers[key.name];
  return Array.isArray(v) ? v.join(',') : v;
}

/**
 * Rendezvous (highest random weight) hashing: each eligible target scores hash(key, target
 * id) and the highest wins, so the same key keeps its target, and when a target leaves only
 * the keys it held move. A request without the key (no such header or cookie) goes to a
 * random target, as Caddy's header policy does, rather than piling onto one.
 */
export class Hash implements Selector {
  readonly #key: HashKey;

  constructor(key: HashKey) {
    this.#key = key;
  }

  select(targets: readonly Target[], ctx: PickContext | null, tried: ReadonlySet<Target> | null) {
    const key = hashKeyOf(this.#key, ctx);
    if (key === undefined) return randomEligible(targets, tried);
    const h = hash32(key);
    let best: Target | undefined;
    let bestScore = -1;
    for (const t of targets) {
      if (!eligible(t, tried)) continue;
      const score = hash32(t.id, h);
      if (score > bestScore) {
        best = t;
        bestScore = score;
      }
    }
    return best;
  }
}
