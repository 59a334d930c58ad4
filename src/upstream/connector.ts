/**
 * How a pool connects to its targets (issue 14 item 4, issue 17 item 3): the ONE place that
 * turns a pool's connection settings — connect timeout, `tls`, `http2`, `local_addresses` —
 * into undici options. The registry's per-target Pools (proxy, upgrade and defer deliveries
 * all go through them) and the active health checks' agents are both built from it, so a
 * check reaches an https target exactly as traffic does.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { buildConnector, type Pool } from 'undici';
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
}

/**
 * Equal keys mean equal connection settings: a dispatcher may be kept across snapshots.
 * The PEM texts are hashed in, so a renewed certificate file read by a reload gets new
 * connections while unchanged settings keep their warm ones.
 */
export function connectKey(spec: ConnectSpec): string {
  const tls = spec.tls === null ? '' : createHash('sha256').update(JSON.stringify(spec.tls)).digest('base64url');
  return `${spec.connectTimeoutMs}|${spec.http2 ? 'h2' : 'h1'}|${spec.localAddresses.join(',')}|${tls}`;
}

/**
 * The undici connector of a pool. `sources` rotates the pool's local addresses; pass one
 * shared instance to every dispatcher of the pool so the rotation covers the pool as a whole.
 */
export function targetConnector(spec: ConnectSpec, sources = new SourceAddresses(spec.localAddresses)): buildConnector.connector {
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
  const pinned = spec.tls?.servername ?? '';
  return (opts, callback) => {
    // undici passes the Host header's name as servername; the certificate must be checked
    // against the name the operator configured (`tls.servername`) or the target URL's host,
    // never one the downstream client chose (`host: preserve`). '' makes buildConnector fall
    // back to `tls.servername` and then to the origin's host name (none for an IP literal).
    const localAddress = sources.nextFor(isIP(opts.hostname) as 0 | 4 | 6) ?? opts.localAddress ?? null;
    connect({ ...opts, servername: pinned, localAddress }, callback);
  };
}

/** undici Pool options for one target of a pool (the connection part; the caller adds the rest). */
export function connectOptions(
  spec: ConnectSpec,
  sources?: SourceAddresses,
): Pick<Pool.Options, 'connect' | 'allowH2'> & { useH2c?: boolean } {
  // `useH2c` on the Pool too (read there, though its types list it under `h2Options` only): it
  // then opens one connection and multiplexes on it, as it does once ALPN said h2, instead of
  // one connection per concurrent request.
  return { connect: targetConnector(spec, sources), allowH2: spec.http2, ...(spec.http2 ? { useH2c: true } : {}) };
}
