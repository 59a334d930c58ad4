/**
 * A TCP listener's data plane (issue 17, item 2): each connection is routed by its first bytes
 * (sniff.ts: TLS SNI, HTTP/1.x Host, or nothing → `default_pool`), a target is picked through
 * the pool's selector, health and passive ejection (`pool.pick(tried)`), and bytes are piped
 * both ways with backpressure until both sides have closed.
 *
 * - **Connect failures** (refused, unreachable, `connect_timeout`) count against the target
 *   in passive health exactly as an HTTP attempt's connect failure does (`state.failed`, see
 *   proxy/outcomes.ts), and the next target is tried; nothing has been sent yet, so trying
 *   again is always safe (STYLE.md §7). A successful connect is the attempt's success.
 * - **The sniffed bytes** are written to the target first (after the PROXY header when
 *   `proxy_protocol` is set), so the target sees the connection from its first byte: TLS is
 *   never terminated here.
 * - **Half-close** is relayed (both sockets are `allowHalfOpen`): a client that sends FIN
 *   still gets the rest of the answer. An error on one side destroys the other.
 * - **`idle_timeout`**: no byte either way for that long closes both sides.
 * - `target.inflight` counts open connections (what `least-inflight` balances on).
 * - While a target is being connected the client is not read (its bytes wait in the kernel,
 *   so nothing is buffered here): a client that leaves then is noticed when the connect ends,
 *   which `connect_timeout` bounds. Its FIN alone is a half-close, never a reason to give up.
 *
 * For the metrics (issue 17, item 4), labels being config ids only: `accepted` and `open`
 * here, `onConnect` when a connection's bytes start to flow, one `onClose` report per
 * connection (route, target, bytes each way, duration), and `connections()` for the bytes of
 * the open ones so far (a live byte rate).
 */
import { once } from 'node:events';
import { connect, createServer, isIP, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream';
import { type ErrorCode, GatewayError } from '../errors.ts';
import { sendErrorOnSocket } from '../errors.ts';
import type { Pool } from '../upstream/pool.ts';
import type { TargetSpec } from '../upstream/spec.ts';
import type { Target } from '../upstream/target.ts';
import { proxyV1, proxyV2 } from './proxy-protocol.ts';
import { type Sniffed, sniff } from './sniff.ts';
import { pickRoute, type TcpSpec } from './spec.ts';

/** One connection's report, once both its sockets have closed. */
export interface TcpClose {
  /** This connection's serial number in its proxy (as in its `TcpOpen` views). */
  id: number;
  /** The listener's id, as given to the proxy. */
  listener: string;
  /** The route id (`default` for the default pool); null when none took the connection. */
  route: string | null;
  pool: string | null;
  /** The target that served it; null when none was reached. */
  target: string | null;
  /** What the first bytes were; null when the client left before they decided. */
  sniffed: Sniffed['kind'] | null;
  /** Bytes from the downstream (client) toward the target, the sniffed ones included. */
  bytesIn: number;
  /** Bytes from the target to the downstream (or the refusal answer). */
  bytesOut: number;
  durationMs: number;
  /** Why it ended otherwise than by both sides closing: a catalog code or a socket error code. */
  error: string | null;
}

export interface TcpProxyOptions {
  /** Listener id, in reports. */
  listener: string;
  spec: TcpSpec;
  /** The current pool of that name (read per connection, so a new snapshot applies at once). */
  pool: (name: string) => Pool | undefined;
  /** Called when a connection's target has accepted it and bytes start to flow. */
  onConnect?: (open: TcpOpen) => void;
  /** Called once per connection when it is over. Must not throw (a throw is swallowed). */
  onClose?: (report: TcpClose) => void;
}

/** An open connection as the metrics see it: where it goes and its bytes so far. */
export interface TcpOpen {
  /** This connection's serial number in its proxy (the same in its `TcpClose`). */
  id: number;
  listener: string;
  route: string | null;
  pool: string | null;
  target: string | null;
  bytesIn: number;
  bytesOut: number;
}

/** A TLS fatal alert record (RFC 8446 §6): level 2, then the description. */
const tlsAlert = (description: number) => Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, description]);
const ALERT_UNRECOGNIZED_NAME = 112;
const ALERT_INTERNAL_ERROR = 80;
/** How long a refused client has to read its answer before the connection is cut. */
const LINGER_MS = 1000;

const addresses = new WeakMap<TargetSpec, { host: string; port: number }>();

/** Where to connect for a target: the host and port of its URL (brackets off an IPv6 literal). */
export function targetAddress(spec: TargetSpec): { host: string; port: number } {
  let a = addresses.get(spec);
  if (a === undefined) {
    const u = new URL(spec.url);
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    a = { host, port: u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80 };
    addresses.set(spec, a);
  }
  return a;
}

const EMPTY_HEADERS = Object.freeze({});

export class TcpProxy {
  readonly listener: string;
  #spec: TcpSpec;
  readonly #pool: (name: string) => Pool | undefined;
  readonly #onClose: ((report: TcpClose) => void) | null;
  readonly #onConnect: ((open: TcpOpen) => void) | null;
  /** Every socket open now, both sides (for `close`). */
  readonly #sockets = new Set<Socket>();
  /** The connections open now. */
  readonly #conns = new Set<Connection>();
  #server: Server | null = null;
  /** Connections accepted since start. */
  accepted = 0;

  constructor(opts: TcpProxyOptions) {
    this.listener = opts.listener;
    this.#spec = opts.spec;
    this.#pool = opts.pool;
    this.#onClose = opts.onClose ?? null;
    this.#onConnect = opts.onConnect ?? null;
  }

  /** Connections open now (being routed or piped). */
  get open(): number {
    return this.#conns.size;
  }

  /** A new compiled spec (a reload): applies to connections accepted from now on. */
  setSpec(spec: TcpSpec): void {
    this.#spec = spec;
  }

  /** Listens on a node:net server of its own; resolves with the port. */
  async listen(port: number, host: string, reusePort = false): Promise<number> {
    const server = createServer({ allowHalfOpen: true }, (s) => this.handle(s));
    this.#server = server;
    server.listen({ port, host, reusePort });
    await once(server, 'listening');
    return (server.address() as { port: number }).port;
  }

  /**
   * Stops accepting, waits up to `graceMs` for open connections to end by themselves, then
   * cuts the rest.
   */
  async close(graceMs = 0): Promise<void> {
    const server = this.#server;
    this.#server = null;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    const deadline = Date.now() + graceMs;
    while (this.#conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  /** Takes one accepted downstream connection (from this proxy's server or a listener's). */
  handle(client: Socket): void {
    this.accepted++;
    // Half-close relayed: without it node:net ends our side when the client's FIN arrives.
    client.allowHalfOpen = true;
    new Connection(this, this.#spec, client).start();
  }

  /** @internal */
  track(s: Socket): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
  }

  /**
   * The connections open now, with their bytes so far (for a live byte rate: a long tunnel
   * would otherwise count only when it ends). Read on demand; nothing is kept per read.
   */
  *connections(): Iterable<TcpOpen> {
    for (const c of this.#conns) yield c.view();
  }

  /** @internal */
  poolOf(name: string): Pool | undefined {
    return this.#pool(name);
  }

  /** @internal */
  opened(c: Connection): void {
    this.#conns.add(c);
  }

  /** @internal */
  connected(c: TcpOpen): void {
    try {
      this.#onConnect?.(c);
    } catch {
      // as for reports
    }
  }

  /** @internal */
  report(c: Connection, r: TcpClose): void {
    this.#conns.delete(c);
    try {
      this.#onClose?.(r);
    } catch {
      // a report must never take a connection (or the process) down
    }
  }
}

/** One downstream connection through its life: sniff, route, connect (with retries), pipe. */
class Connection {
  readonly #proxy: TcpProxy;
  readonly #spec: TcpSpec;
  readonly #client: Socket;
  readonly #started = performance.now();
  readonly id: number;
  #upstream: Socket | null = null;
  #route: string | null = null;
  #poolName: string | null = null;
  #target: Target | null = null;
  #sniffed: Sniffed['kind'] | null = null;
  #error: string | null = null;
  /** Sockets still open (the client, and the target's once connected). */
  #live = 1;
  #clientGone = false;

  constructor(proxy: TcpProxy, spec: TcpSpec, client: Socket) {
    this.#proxy = proxy;
    this.#spec = spec;
    this.#client = client;
    this.id = proxy.accepted;
  }

  start(): void {
    const client = this.#client;
    this.#proxy.track(client);
    this.#proxy.opened(this);
    client.setNoDelay(true);
    client.on('error', (err) => this.#fail(codeOf(err)));
    client.once('close', () => {
      if (this.#sniffed === null) this.#fail('CLIENT_CLOSED');
      this.#clientGone = true;
      this.#upstream?.destroy();
      this.#closed();
    });
    sniff(client, { windowBytes: this.#spec.windowBytes, timeoutMs: this.#spec.windowTimeoutMs }).then(
      ({ sniffed, head, ended }) => this.#routed(sniffed, head, ended),
      () => client.destroy(),
    );
  }

  #fail(code: string): void {
    this.#error ??= code;
  }

  #routed(sniffed: Sniffed, head: Buffer, ended: boolean): void {
    if (this.#clientGone) return;
    this.#sniffed = sniffed.kind;
    // A tcp listener is no forward proxy: a CONNECT goes nowhere unless `connect: pipe` says so.
    if (sniffed.kind === 'http' && sniffed.method === 'CONNECT' && this.#spec.connect === 'refuse')
      return this.#refuse(sniffed, 'METHOD_NOT_ALLOWED', `CONNECT ${sniffed.target} refused: a tcp listener tunnels to its own pools only`);
    const route = pickRoute(this.#spec, sniffed);
    if (route === null) return this.#refuse(sniffed, 'ROUTE_NOT_FOUND', 'no TCP route takes this connection');
    this.#route = route.id;
    this.#poolName = route.pool;
    const pool = this.#proxy.poolOf(route.pool);
    if (pool === undefined) return this.#refuse(sniffed, 'NO_TARGET_AVAILABLE', `pool "${route.pool}" is not served`);
    const ctx = {
      headers: sniffed.kind === 'http' ? { host: sniffed.host } : EMPTY_HEADERS,
      socket: this.#client,
    };
    this.#attempt(pool, ctx, new Set(), sniffed, head, ended);
  }

  /** One connect to the next target; a failure tries the one after, until the pool has none left. */
  #attempt(
    pool: Pool,
    ctx: { headers: Record<string, string>; socket: Socket },
    tried: Set<Target>,
    sniffed: Sniffed,
    head: Buffer,
    ended: boolean,
  ): void {
    const target = pool.pick(tried, ctx);
    if (target === undefined) {
      return tried.size === 0
        ? this.#refuse(sniffed, 'NO_TARGET_AVAILABLE', `no target of pool "${pool.name}" is available`)
        : this.#refuse(sniffed, 'TARGET_UNREACHABLE', `no target of pool "${pool.name}" could be reached`);
    }
    tried.add(target);
    target.inflight++;
    const { host, port } = targetAddress(target.spec);
    const began = performance.now();
    // `local_addresses`: the pool's one rotation, shared with its HTTP dispatchers (issue 17 item 3).
    const localAddress = pool.sources.nextFor(isIP(host) as 0 | 4 | 6);
    const up = connect({ host, port, allowHalfOpen: true, noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) });
    this.#upstream = up;
    this.#proxy.track(up);
    let connected = false;
    let failed = false;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      target.inflight--;
    };
    const timer = setTimeout(() => {
      up.destroy(Object.assign(new Error(`connect timeout to ${target.id}`), { code: 'ETIMEDOUT' }));
    }, this.#spec.connectTimeoutMs);
    up.on('error', (err) => {
      if (connected) return this.#fail(codeOf(err));
      failed = true;
      clearTimeout(timer);
      release();
      this.#upstream = null;
      if (this.#clientGone) return target.state.cancel();
      // A connect failure: the target's fault, as for an HTTP attempt (proxy/outcomes.ts).
      target.state.failed(null);
      this.#attempt(pool, ctx, tried, sniffed, head, ended);
    });
    up.once('close', () => {
      clearTimeout(timer);
      release();
      if (connected) this.#closed();
      // Destroyed while connecting, because the client left: counted, never blamed.
      else if (!failed) target.state.cancel();
    });
    up.once('connect', () => {
      clearTimeout(timer);
      if (this.#clientGone) return void up.destroy();
      connected = true;
      this.#live++;
      target.state.succeeded(performance.now() - began);
      this.#target = target;
      this.#splice(up, head, ended);
      this.#proxy.connected(this.view());
    });
  }

  #splice(up: Socket, head: Buffer, ended: boolean): void {
    const client = this.#client;
    const spec = this.#spec;
    if (spec.proxyProtocol !== null) up.write(spec.proxyProtocol === 'v1' ? proxyV1(client) : proxyV2(client));
    if (head.length > 0) up.write(head);
    // Two pipelines over one socket pair: each watches both ends (a fixed number per
    // connection, not a leak), past node's default warning threshold of 10.
    client.setMaxListeners(20);
    up.setMaxListeners(20);
    const done = (err: NodeJS.ErrnoException | null | undefined) => {
      if (err) this.#fail(codeOf(err));
    };
    if (ended) up.end();
    else pipeline(client, up, done);
    pipeline(up, client, done);
    if (spec.idleTimeoutMs > 0) {
      // The client socket sees every byte either way (reads one direction, writes the other).
      client.setTimeout(spec.idleTimeoutMs, () => {
        this.#fail('IDLE_TIMEOUT');
        client.destroy();
        up.destroy();
      });
    }
  }

  /** No route, no target: an answer the client's protocol can read, then the connection closes. */
  #refuse(sniffed: Sniffed, code: ErrorCode, message: string): void {
    this.#fail(code);
    const client = this.#client;
    // Unread bytes would make our close a reset that can destroy the answer before it is read.
    client.resume();
    client.setTimeout(LINGER_MS, () => client.destroy());
    if (sniffed.kind === 'http') {
      sendErrorOnSocket(client, new GatewayError(code, message));
    } else if (sniffed.kind === 'tls') {
      client.end(tlsAlert(code === 'ROUTE_NOT_FOUND' ? ALERT_UNRECOGNIZED_NAME : ALERT_INTERNAL_ERROR));
    } else {
      client.end();
    }
  }

  view(): TcpOpen {
    return {
      id: this.id,
      listener: this.#proxy.listener,
      route: this.#route,
      pool: this.#poolName,
      target: this.#target?.id ?? null,
      bytesIn: this.#client.bytesRead,
      bytesOut: this.#client.bytesWritten,
    };
  }

  #closed(): void {
    if (--this.#live > 0) return;
    const client = this.#client;
    this.#proxy.report(this, {
      id: this.id,
      listener: this.#proxy.listener,
      route: this.#route,
      pool: this.#poolName,
      target: this.#target?.id ?? null,
      sniffed: this.#sniffed,
      bytesIn: client.bytesRead,
      bytesOut: client.bytesWritten,
      durationMs: performance.now() - this.#started,
      error: this.#error,
    });
  }
}

function codeOf(err: NodeJS.ErrnoException): string {
  return typeof err.code === 'string' ? err.code : 'ERROR';
}
