/**
 * How a pool connects to its targets (issue 14 item 4, issue 17 item 3): the ONE place that
 * turns a pool's connection settings — connect timeout, `tls`, `http2`, `local_addresses` —
 * into undici options. The registry's per-target Pools (proxy, upgrade and defer deliveries
 * all go through them) and the active health checks' agents are both built from it, so a
 * check reaches an https target exactly as traffic does.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { Agent, buildConnector, type Dispatcher, Pool } from 'undici';
import { passingOverContinue } from '../lib/continue.ts';
import { dnsInterceptor, type Resolve, shareQueries, systemResolve } from '../lib/dns.ts';
import { type TlsSpec, tlsOptions } from '../lib/tls.ts';
import { SourceAddresses } from './local-addresses.ts';

/** The part of a pool's spec that decides how connections are opened. */
export interface ConnectSpec {
  connectTimeoutMs: number;
  /** null: Node's defaults (system CAs, verification on, SNI from the target URL). */
  tls: TlsSpec | null;
  /**
   * HTTP/2 to targets: negotiated by ALPN with https targets (undici `allowH2`), with prior
   * knowledge (h2c, undici `useH2c`) with http targets; HTTP/1.1 otherwise.
   */
  http2: boolean;
  /** Source addresses for new connections, round robin; [] = the kernel's choice. */
  localAddresses: readonly string[];
  /** Longest reuse of a DNS answer for targets named by host name; 0 = no cache (issue 11). */
  dnsMaxTtlMs: number;
}

/**
 * Equal keys mean equal connection settings: a dispatcher may be kept across snapshots.
 * The PEM texts are hashed in, so a renewed certificate file read by a reload gets new
 * connections while unchanged settings keep their warm ones.
 */
export function connectKey(spec: ConnectSpec): string {
  const tls = spec.tls === null ? '' : createHash('sha256').update(JSON.stringify(spec.tls)).digest('base64url');
  return `${spec.connectTimeoutMs}|${spec.http2 ? 'h2' : 'h1'}|${spec.localAddresses.join(',')}|${spec.dnsMaxTtlMs}|${tls}`;
}

/**
 * The undici connector of a pool. `sources` rotates the pool's local addresses; pass one
 * shared instance to every dispatcher of the pool so the rotation covers the pool as a whole.
 */
export function targetConnector(
  spec: ConnectSpec,
  sources = new SourceAddresses(spec.localAddresses),
  name: string | null = null,
): buildConnector.connector {
  const tls = tlsOptions(spec.tls);
  const connect = buildConnector({
    timeout: spec.connectTimeoutMs,
    ...tls,
    allowH2: spec.http2,
    // With `http2: true` h2 is offered first: a target that speaks both picks it; an http://
    // target is spoken to in HTTP/2 from the first byte (h2c prior knowledge: gRPC servers,
    // Envoy and node:http2 accept it; an HTTP/1.1-only target then fails at connect).
    ...(spec.http2 ? { preferH2: true, useH2c: true } : {}),
  } as buildConnector.BuildOptions);
  // `name`: the target's host name when the dns interceptor sends its requests to an address.
  const pinned = spec.tls?.servername ?? name ?? '';
  return passingOverContinue((opts, callback) => {
    // undici passes the Host header's name as servername; the certificate must be checked
    // against the name the operator configured (`tls.servername`) or the target URL's host,
    // never one the downstream client chose (`host: preserve`). '' makes buildConnector fall
    // back to `tls.servername` and then to the origin's host name (none for an IP literal).
    const localAddress = sources.nextFor(isIP(opts.hostname) as 0 | 4 | 6) ?? opts.localAddress ?? null;
    connect({ ...opts, servername: pinned, localAddress }, callback);
  });
}

/** undici Pool options for one target of a pool (the connection part; the caller adds the rest). */
export function connectOptions(
  spec: ConnectSpec,
  sources?: SourceAddresses,
  name: string | null = null,
): Pick<Pool.Options, 'connect' | 'allowH2'> & { useH2c?: boolean } {
  // `useH2c` on the Pool too (read there, though its types list it under `h2Options` only): it
  // then opens one connection and multiplexes on it, as it does once ALPN said h2, instead of
  // one connection per concurrent request.
  return { connect: targetConnector(spec, sources, name), allowH2: spec.http2, ...(spec.http2 ? { useH2c: true } : {}) };
}

/** TTL (seconds) given to answers of getaddrinfo (`localhost`, /etc/hosts), which reports none. */
const FALLBACK_TTL = 5;
const DNS_QUERY_TIMEOUT_MS = 2000;

/** One resolver for every pool: concurrent lookups of one name share one query. */
let shared: Resolve | null = null;

/**
 * IPv4 answers when the name has any, else IPv6: a dual-stack name is not alternated between
 * families (undici's default), which would send every other request to an address the target
 * may not listen on, each paying a refused connect first. Envoy's `V4_PREFERRED`.
 */
function preferIpv4(resolve: Resolve): Resolve {
  return async (hostname) => {
    const records = await resolve(hostname);
    const v4 = records.filter((r) => r.family === 4);
    return v4.length > 0 ? v4 : records;
  };
}

/**
 * The dispatcher of one target (issue 11 item 2): an undici Pool to its origin, or, for a
 * target named by host name with the pool's DNS cache on, an Agent holding one such Pool per
 * address its name resolves to, with undici's dns interceptor in front (the same interceptor
 * multiplex routes use, lib/dns.ts). Answers are reused for their DNS TTL, at most
 * `dnsMaxTtlMs`; new connections are spread over the addresses; the Host header, SNI and the
 * certificate check stay the target's name. Trade-off: `connections` then bounds each
 * address's Pool, not the target as a whole.
 */
export function targetDispatcher(
  spec: ConnectSpec,
  origin: string,
  sources: SourceAddresses,
  options: Omit<Pool.Options, 'connect' | 'allowH2'>,
): Dispatcher {
  const hostname = new URL(origin).hostname;
  if (spec.dnsMaxTtlMs === 0 || hostname.startsWith('[') || isIP(hostname) !== 0)
    return new Pool(origin, { ...options, ...connectOptions(spec, sources) });
  const perAddress = { ...options, ...connectOptions(spec, sources, hostname) };
  shared ??= shareQueries(systemResolve({ fallbackTtl: FALLBACK_TTL, timeoutMs: DNS_QUERY_TIMEOUT_MS }));
  // One name per target: a small store is plenty.
  return new Agent({ factory: (address) => new Pool(address, perAddress) }).compose(
    dnsInterceptor(preferIpv4(shared), { maxTtlMs: spec.dnsMaxTtlMs, maxEntries: 4 }),
  );
}
