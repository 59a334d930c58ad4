/**
 * DNS for outbound requests (issue 11): undici's own dns interceptor caches the answers (for
 * their TTL, capped) and spreads connections over them; here are only what it lacks — a
 * resolver that reports TTLs, one query shared by concurrent lookups of a name, and a bounded
 * record store. Used by multiplex routes (behind their SSRF guard, multiplex/ssrf.ts
 * `guardedResolve`: bounded in entries because batch authors choose the names), by CONNECT
 * tunnels, and by pools whose targets are named by host name (upstream/registry.ts).
 */
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { type Dispatcher, interceptors } from 'undici';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
  /** Seconds. */
  ttl: number;
}

export type Resolve = (hostname: string) => Promise<ResolvedAddress[]>;

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

/**
 * Concurrent lookups of one name share one query (a batch may name the same new host a
 * hundred times at once; undici's dns interceptor would ask a hundred times). Not a cache: a
 * settled answer is forgotten, the interceptor keeps it.
 */
export function shareQueries(resolve: Resolve): Resolve {
  const pending = new Map<string, Promise<ResolvedAddress[]>>();
  return (hostname) => {
    const key = hostname.toLowerCase();
    let p = pending.get(key);
    if (p === undefined) {
      p = resolve(key).finally(() => pending.delete(key));
      pending.set(key, p);
    }
    return p;
  };
}

type Storage = NonNullable<NonNullable<Parameters<typeof interceptors.dns>[0]>['storage']>;
type OriginRecords = NonNullable<ReturnType<Storage['get']>>;

/**
 * The interceptor's record store, bounded: batch authors choose the names, so the oldest name
 * is dropped past `maxEntries` (undici's own store stops caching new names when full).
 */
export class DnsStorage implements Storage {
  readonly #max: number;
  readonly #records = new Map<string, OriginRecords>();

  constructor(maxEntries: number) {
    this.#max = maxEntries;
  }

  get size(): number {
    return this.#records.size;
  }

  get(hostname: string): OriginRecords | null {
    return this.#records.get(hostname) ?? null;
  }

  set(hostname: string, records: OriginRecords | null): void {
    // The interceptor stores only after a miss, so an entry present here was stored by a
    // concurrent lookup of the same name: keep it, so that those requests share one record set
    // and its rotation instead of each starting over at the first address.
    if (records !== null && this.#records.has(hostname)) return;
    this.#records.delete(hostname);
    if (records === null) return;
    if (this.#records.size >= this.#max) this.#records.delete(this.#records.keys().next().value!);
    this.#records.set(hostname, records);
  }

  delete(hostname: string): void {
    this.#records.delete(hostname);
  }

  full(): boolean {
    return false;
  }
}

export interface DnsOptions {
  /** Upper bound on how long an answer is kept, in milliseconds, whatever its TTL says. */
  maxTtlMs: number;
  /** Names kept at most; the oldest entry is dropped first. */
  maxEntries: number;
}

/**
 * undici's dns interceptor over `checked` (for multiplex, a guarded resolve, ssrf.ts
 * `guardedResolve`): answers are kept for their TTL (capped), spread over new connections, and
 * the request goes to the resolved address with the name as Host and TLS servername. Only
 * addresses the guard allowed are ever cached, and the connection is made to exactly such an
 * address, so a DNS answer that changes later (rebinding) is checked again when it is next
 * resolved.
 */
export function dnsInterceptor(checked: Resolve, opts: DnsOptions): Dispatcher.DispatcherComposeInterceptor {
  const cached = interceptors.dns({
    maxTTL: opts.maxTtlMs,
    storage: new DnsStorage(opts.maxEntries),
    lookup: (origin, _options, callback) => {
      checked(origin.hostname).then(
        (records) => callback(null, records.map((r) => ({ address: r.address, family: r.family, ttl: r.ttl * 1000 }))),
        (err: NodeJS.ErrnoException) => callback(err, []),
      );
    },
  });
  return (dispatch) => {
    const resolving = cached(dispatch);
    // The interceptor takes a bracketed IPv6 literal (`[::1]`) for a name: IP literals skip
    // it and go to the connector, which checks them.
    return (options, handler) =>
      isIpLiteral(options.origin) ? dispatch(options, handler) : resolving(options, handler);
  };
}

function isIpLiteral(origin: string | URL | undefined): boolean {
  if (origin === undefined) return false;
  const host = (typeof origin === 'string' ? new URL(origin) : origin).hostname;
  return host[0] === '[' || isIP(host) !== 0;
}
