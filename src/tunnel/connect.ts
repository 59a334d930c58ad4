/**
 * CONNECT tunnels (issue 17, item 1): the `connect` route action. The pipeline matches the
 * request and writes the access-log line (server/pipeline.ts `connect`); this file reads the
 * authority, checks the proxy credentials, dials the destination and pipes.
 *
 * Order of the checks, each answered through the one error renderer: a malformed authority is
 * 400; with `auth`, missing or wrong credentials are 407 (before anything about destinations is
 * said, so the policy cannot be probed without credentials); a port or destination outside the
 * route's `allow` list is 403, decided before any connection is attempted — names are resolved
 * and every address checked by the multiplex guard (multiplex/ssrf.ts) inside the lookup of the
 * very socket that connects, so the address checked is the address dialed; a refused or failed
 * connection is 502, one that takes longer than `connect_timeout` 504. Then `200 Connection
 * Established` and bytes both ways with backpressure (`pipe`: a full socket pauses the other).
 */
import { timingSafeEqual } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { buildConnector } from 'undici';
import { GatewayError } from '../errors.ts';
import { shareQueries, systemResolve } from '../lib/dns.ts';
import { ForbiddenTargetError, guardedConnector, normalizeHost, TargetDnsError } from '../multiplex/ssrf.ts';
import type { PickContext } from '../upstream/selectors/types.ts';
import type { Pool } from '../upstream/pool.ts';
import type { Target } from '../upstream/target.ts';
import { type ConnectAction, type ConnectAuth, credentialDigest, type PortRanges } from './spec.ts';
import type { OpenTunnel } from '../proxy/upgrade.ts';

/** The `target` label and log field of a tunnel that went where the request said (not to a pool). */
export const DIRECT_TARGET = '_direct';

/** `CONNECT host:port`'s request target, read. */
export interface Authority {
  /** What is dialed: a name (lower case, no trailing dot) or an IP literal without brackets. */
  readonly host: string;
  readonly port: number;
  /** What the route's `match.host` sees: lower case, an IPv6 literal in brackets (as `hostOf`). */
  readonly matchHost: string;
}

const AUTHORITY = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/;

/** RFC 9110 §9.3.6: the authority-form `host:port`, port required; anything else is 400. */
export function parseAuthority(target: string): Authority {
  const m = AUTHORITY.exec(target);
  const port = m ? Number(m[3]) : 0;
  if (m === null || port < 1 || port > 65535 || (m[1] !== undefined && isIP(m[1]) !== 6))
    throw new GatewayError('BAD_REQUEST', 'CONNECT needs host:port as its request target (e.g. example.com:443)');
  if (m[1] !== undefined) {
    const ip = m[1].toLowerCase();
    return { host: ip, port, matchHost: `[${ip}]` };
  }
  const host = normalizeHost(m[2]);
  if (host === '' || host.startsWith('.') || host.includes('..'))
    throw new GatewayError('BAD_REQUEST', 'CONNECT needs host:port as its request target (e.g. example.com:443)');
  return { host, port, matchHost: host };
}

/**
 * Whether `Proxy-Authorization` carries one of the route's credentials (RFC 7617 Basic). Every
 * configured credential is compared, in constant time over equal-length digests, whatever
 * matched first: the time taken says nothing about which user or how much of a password was right.
 */
export function proxyAuthorized(header: string | undefined, auth: ConnectAuth): boolean {
  if (header === undefined) return false;
  const space = header.indexOf(' ');
  if (space === -1 || header.slice(0, space).toLowerCase() !== 'basic') return false;
  const given = credentialDigest(Buffer.from(header.slice(space + 1).trim(), 'base64').toString('utf8'));
  let ok = false;
  for (const d of auth.digests) ok = timingSafeEqual(given, d) || ok;
  return ok;
}

function portAllowed(ports: PortRanges, port: number): boolean {
  for (const [lo, hi] of ports) if (port >= lo && port <= hi) return true;
  return false;
}

/** What a successful dial hands back. */
export interface Dialed {
  readonly socket: Socket;
  /** `_direct`, or the id of the pool target connected to. */
  readonly target: string;
}

type Connector = buildConnector.connector;

/**
 * Names are resolved as multiplex resolves them (c-ares with TTLs, getaddrinfo for `localhost`
 * and /etc/hosts), without a cache: every tunnel's name is checked afresh. The TTL is unused.
 */
const resolve = shareQueries(systemResolve({ fallbackTtl: 0, timeoutMs: 2000 }));

/** One connector per compiled action (so per snapshot): guarded over its allow list, or plain for a pool. */
const connectors = new WeakMap<ConnectAction, Connector>();

function connectorOf(action: ConnectAction): Connector {
  let c = connectors.get(action);
  if (c === undefined) {
    const options = { timeout: action.connectTimeoutMs };
    c = action.guard === null ? buildConnector(options) : guardedConnector(action.guard, resolve, options);
    connectors.set(action, c);
  }
  return c;
}

function dialError(err: Error, where: string, timeoutMs: number): GatewayError {
  if (err instanceof ForbiddenTargetError) return new GatewayError('DESTINATION_FORBIDDEN', err.message);
  if (err instanceof TargetDnsError) return new GatewayError('TARGET_UNREACHABLE', err.message);
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'UND_ERR_CONNECT_TIMEOUT')
    return new GatewayError('TARGET_TIMEOUT', `${where} did not accept the connection within ${timeoutMs} ms`);
  return new GatewayError('TARGET_UNREACHABLE', `could not connect to ${where} (${code ?? err.message})`);
}

function connectOnce(connector: Connector, host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    connector({ hostname: host, host: `${host}:${port}`, protocol: 'http:', port: String(port) }, (err, socket) => {
      if (err !== null) reject(err);
      else resolve(socket as Socket);
    });
  });
}

/**
 * Opens the connection a tunnel goes through: to the requested destination if the route's allow
 * list and ports let it, or to a target of the route's pool. Rejects with a GatewayError.
 */
export async function dialConnect(
  action: ConnectAction,
  authority: Authority,
  pool: Pool | undefined,
  pickContext: PickContext | null,
): Promise<Dialed> {
  const connector = connectorOf(action);
  if (pool === undefined) {
    if (!portAllowed(action.ports, authority.port))
      throw new GatewayError('DESTINATION_FORBIDDEN', `port ${authority.port} is not allowed`);
    const where = isIP(authority.host) === 6 ? `[${authority.host}]:${authority.port}` : `${authority.host}:${authority.port}`;
    try {
      return { socket: await connectOnce(connector, authority.host, authority.port), target: DIRECT_TARGET };
    } catch (err) {
      throw dialError(err as Error, where, action.connectTimeoutMs);
    }
  }
  return dialPool(connector, action, pool, pickContext);
}

/**
 * A fixed destination: the pool's selector picks, a target that cannot be connected to counts
 * as a failure for its passive health (ejection) and the next one is tried, each at most once.
 */
async function dialPool(
  connector: Connector,
  action: ConnectAction,
  pool: Pool,
  pickContext: PickContext | null,
): Promise<Dialed> {
  const tried = new Set<Target>();
  let last: GatewayError | null = null;
  for (let target = pool.pick(tried, pickContext); target !== undefined; target = pool.pick(tried, pickContext)) {
    tried.add(target);
    const url = new URL(target.spec.origin);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
    const started = performance.now();
    try {
      const socket = await connectOnce(connector, host, port);
      target.state.succeeded(performance.now() - started);
      return { socket, target: target.id };
    } catch (err) {
      target.state.failed(performance.now() - started);
      last = dialError(err as Error, target.id, action.connectTimeoutMs);
    }
  }
  throw last ?? new GatewayError('NO_TARGET_AVAILABLE', `no target of pool "${pool.name}" is available`);
}

export interface PipeOptions {
  /** `routes[].tunnel_idle_timeout`: no byte either way for this long closes the tunnel; 0 = never. */
  idleTimeoutMs: number;
  /** `connect.max_duration`; 0 = none. */
  maxDurationMs: number;
  /** Where the open tunnel is registered until it ends (the pipeline's, for shutdown). */
  open: Set<OpenTunnel>;
  /** Once, when both sockets are closed: null, or why the gateway cut the tunnel. */
  onEnd: (error: string | null) => void;
}

/** The whole answer to a CONNECT that is tunnelled (RFC 9110 §9.3.6: no content, no framing headers). */
const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';
/** After one side closed, how long the other may take to finish sending what it has. */
const CLOSE_LINGER_MS = 10_000;

/**
 * Answers 200 and pipes `downstream` ⇄ `upstream` with backpressure; `head` (bytes the client
 * sent after the request head, already read) goes first. A FIN is passed on (half-close); a
 * side that closes gets the other one ended gracefully, so what is still buffered is delivered;
 * an error, the idle or total timeout, or shutdown cut both.
 */
export function pipeTunnel(downstream: Duplex, upstream: Socket, head: Buffer, opts: PipeOptions): void {
  downstream.write(ESTABLISHED);
  if (head.length > 0) upstream.write(head);
  let done = false;
  let error: string | null = null;
  let closed = 0;
  let linger: NodeJS.Timeout | null = null;
  let total: NodeJS.Timeout | null = null;
  const cut = (why: string | null) => {
    if (error === null) error = why;
    downstream.destroy();
    upstream.destroy();
  };
  const handle: OpenTunnel = { goAway: () => cut(null) };
  opts.open.add(handle);
  const finish = () => {
    if (done) return;
    done = true;
    if (linger !== null) clearTimeout(linger);
    if (total !== null) clearTimeout(total);
    opts.open.delete(handle);
    opts.onEnd(error);
  };
  const onClose = (other: Duplex) => () => {
    if (++closed === 2) {
      finish();
      return;
    }
    other.end();
    linger = setTimeout(() => cut(null), CLOSE_LINGER_MS);
    linger.unref();
  };
  downstream.on('error', () => cut('TUNNEL_ERROR'));
  upstream.on('error', () => cut('TUNNEL_ERROR'));
  downstream.once('close', onClose(upstream));
  upstream.once('close', onClose(downstream));
  const idle = opts.idleTimeoutMs;
  if (idle > 0) {
    // Each socket's timer is reset by its own reads and writes; a byte either way moves both.
    const d = downstream as Duplex & { setTimeout?: (ms: number, cb: () => void) => void };
    d.setTimeout?.(idle, () => cut('TUNNEL_IDLE'));
    upstream.setTimeout(idle, () => cut('TUNNEL_IDLE'));
  }
  if (opts.maxDurationMs > 0) {
    total = setTimeout(() => cut('TUNNEL_MAX_DURATION'), opts.maxDurationMs);
    total.unref();
  }
  downstream.pipe(upstream);
  upstream.pipe(downstream);
}
