/**
 * A `mode: tcp` listener as the runtime serves it (issue 17, item 2): one bound socket whose
 * connections go to a `TcpProxy` (src/tcp/proxy.ts), which routes each by its first bytes and
 * pipes it to a target of the pool its route names — the pool read from the current snapshot
 * at each connection, so a reload's pools and `tcp` block apply to the next connection.
 *
 * Its figures are an HTTP listener's (server/wire.ts `countConnections`: accepted, open,
 * closed, duration, by listener name), and its bytes go to `manifold_bytes_total` by TCP route
 * and target: what a connection moved is counted when it closes, and what an open one moved
 * so far is counted whenever the metrics are read (`flushBytes`), so a day-long connection
 * shows in the live byte rate while it lasts. Each byte is counted once.
 */
import { createServer, type Server } from 'node:net';
import type { NamedListener } from '../config/listeners.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { TcpProxy } from '../tcp/proxy.ts';
import type { TcpSpec } from '../tcp/spec.ts';
import type { Pool } from '../upstream/pool.ts';
import { type BindOptions, bind } from './listeners.ts';
import { countConnections } from './wire.ts';

export class TcpListener {
  readonly spec: NamedListener;
  readonly proxy: TcpProxy;
  readonly #server: Server;
  readonly #log: Logger;
  readonly #metrics: Metrics | null;
  /** Bytes of open connections already counted by `flushBytes`, by connection id. */
  readonly #counted = new Map<number, { in: number; out: number }>();

  constructor(spec: NamedListener, tcp: TcpSpec, pool: (name: string) => Pool | undefined, log: Logger, metrics: Metrics | null) {
    this.spec = spec;
    this.#log = log.child({ listener: spec.name });
    this.#metrics = metrics;
    this.proxy = new TcpProxy({
      listener: spec.name,
      spec: tcp,
      pool,
      onClose: (r) => {
        const before = this.#counted.get(r.id);
        this.#counted.delete(r.id);
        metrics?.bytes(r.route, r.target, r.bytesIn - (before?.in ?? 0), r.bytesOut - (before?.out ?? 0));
        if (r.error !== null) this.#log.debug({ route: r.route, target: r.target, error: r.error }, 'tcp connection ended');
      },
    });
    this.#server = createServer({ allowHalfOpen: true }, (socket) => this.proxy.handle(socket));
    if (metrics !== null) countConnections(this.#server, metrics, spec.name);
  }

  /** The socket server that accepts this listener's connections. */
  get server(): Server {
    return this.#server;
  }

  listen(shared: BindOptions): Promise<void> {
    return bind(this.#server, this.spec, shared, this.#log);
  }

  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  /** A reload: the new `tcp` block applies to connections accepted from now on. */
  setSpec(tcp: TcpSpec): void {
    this.proxy.setSpec(tcp);
  }

  /** What open connections moved since the last call (or their start): counted now. */
  flushBytes(): void {
    const metrics = this.#metrics;
    if (metrics === null) return;
    for (const c of this.proxy.connections()) {
      // Counted once a target took it, under that target (as its close will count the rest).
      if (c.route === null || c.target === null) continue;
      let seen = this.#counted.get(c.id);
      if (seen === undefined) this.#counted.set(c.id, (seen = { in: 0, out: 0 }));
      const dIn = c.bytesIn - seen.in;
      const dOut = c.bytesOut - seen.out;
      if (dIn === 0 && dOut === 0) continue;
      metrics.bytes(c.route, c.target, dIn, dOut);
      seen.in = c.bytesIn;
      seen.out = c.bytesOut;
    }
  }

  /** The start of a drain: no new connection (open ones keep flowing). */
  stopAccepting(): void {
    this.#server.close();
  }

  /** Open connections (routed, being routed or piped). */
  get open(): number {
    return this.proxy.open;
  }

  /** Waits up to `graceMs` for open connections to end by themselves, then cuts the rest. */
  close(graceMs: number): Promise<void> {
    return this.proxy.close(graceMs);
  }
}
