/**
 * DNS for multiplex targets: answers cached for their TTL (capped), concurrent lookups of one
 * name share one query, and each lookup returns the addresses rotated so new connections
 * spread across them. Bounded in entries because batch authors choose the names.
 */
import { promises as dns } from 'node:dns';
import type { Resolve, ResolvedAddress } from './ssrf.ts';

export interface SystemResolveOptions {
  /** TTL (seconds) given to answers from getaddrinfo, which reports none. */
  fallbackTtl: number;
  /** Per-query timeout of the DNS client, in milliseconds. */
  timeoutMs: number;
}

/**
 * Asks the DNS servers (c-ares, with TTLs) for A and AAAA records; a name they do not know
 * (`localhost`, /etc/hosts entries, mDNS) falls back to the system's getaddrinfo, cached for
 * `fallbackTtl`. Trade-off: a name in both DNS and /etc/hosts resolves to the DNS answer.
 */
export function systemResolve(opts: SystemResolveOptions): Resolve {
  const resolver = new dns.Resolver({ timeout: opts.timeoutMs, tries: 2 });
  return async (hostname) => {
    const [v4, v6] = await Promise.allSettled([
      resolver.resolve4(hostname, { ttl: true }),
      resolver.resolve6(hostname, { ttl: true }),
    ]);
    const records: ResolvedAddress[] = [];
    if (v4.status === 'fulfilled') for (const r of v4.value) records.push({ ...r, family: 4 });
    if (v6.status === 'fulfilled') for (const r of v6.value) records.push({ ...r, family: 6 });
    if (records.length > 0) return records;
    const found = await dns.lookup(hostname, { all: true, order: 'verbatim' });
    return found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4, ttl: opts.fallbackTtl }));
  };
}

interface Entry {
  readonly records: readonly ResolvedAddress[];
  readonly expiresAt: number;
  next: number;
}

export interface DnsCacheOptions {
  /** Upper bound on how long an answer is kept, in milliseconds, whatever its TTL says. */
  maxTtlMs: number;
  /** Names kept at most; the oldest entry is dropped first. */
  maxEntries: number;
}

export class DnsCache {
  readonly #resolve: Resolve;
  readonly #opts: DnsCacheOptions;
  readonly #entries = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<Entry>>();

  constructor(resolve: Resolve, opts: DnsCacheOptions) {
    this.#resolve = resolve;
    this.#opts = opts;
  }

  /** Usable as a `Resolve`: the cached (or fresh) answer, rotated by one on every call. */
  readonly resolve: Resolve = async (hostname) => {
    const key = hostname.toLowerCase();
    let entry = this.#entries.get(key);
    if (!entry || entry.expiresAt <= Date.now()) entry = await this.#refresh(key);
    const { records } = entry;
    const start = entry.next++ % records.length;
    return [...records.slice(start), ...records.slice(0, start)];
  };

  #refresh(key: string): Promise<Entry> {
    let pending = this.#inflight.get(key);
    if (pending) return pending;
    pending = this.#resolve(key)
      .then((records) => {
        if (records.length === 0)
          throw Object.assign(new Error(`no address for ${key}`), { code: 'ENODATA' });
        const ttlMs = Math.min(this.#opts.maxTtlMs, ...records.map((r) => r.ttl * 1000));
        const entry: Entry = { records, expiresAt: Date.now() + ttlMs, next: 0 };
        this.#entries.delete(key);
        if (this.#entries.size >= this.#opts.maxEntries) {
          this.#entries.delete(this.#entries.keys().next().value!);
        }
        this.#entries.set(key, entry);
        return entry;
      })
      .finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, pending);
    return pending;
  }

  get size(): number {
    return this.#entries.size;
  }
}
