/**
 * One data-plane runtime: listener + pipeline + upstream registry, built from a validated
 * config. A worker process runs one; `--workers 0/1` runs one in the only process.
 */
import cluster from 'node:cluster';
import { compile } from '../config/compile.ts';
import { listenersOf } from '../config/listeners.ts';
import type { Config } from '../config/schema.ts';
import { parseDuration } from '../lib/units.ts';
import { MultiplexRegistry } from '../multiplex/registry.ts';
import type { Logger } from '../observability/logger.ts';
import { Metrics } from '../observability/metrics.ts';
import { admissionFor } from '../server/listener.ts';
import { Listener } from '../server/listeners.ts';
import { TcpListener } from '../server/tcp-listener.ts';
import { Pipeline } from '../server/pipeline.ts';
import { countConnections } from '../server/wire.ts';
import { buildSnapshot, type Snapshot } from '../server/snapshot.ts';
import { DeferService } from '../defer/service.ts';
import { strategyStats } from '../strategy/stats.ts';
import { forward as baseForward } from '../proxy/forward.ts';
import { recordOutcomes } from '../proxy/outcomes.ts';
import { type DownTargets, Registry } from '../upstream/registry.ts';
import type { WorkerStats } from '../upstream/stats.ts';
import { VERSION } from '../version.ts';

export interface Runtime {
  /** Every HTTP listener, bound (issue 14), in config order. */
  readonly listeners: readonly Listener[];
  /** Every `mode: tcp` listener, bound (issue 17), in config order. */
  readonly tcpListeners: readonly TcpListener[];
  readonly pipeline: Pipeline;
  /** Issue 6: the queue of `defer` routes; this process delivers too unless it is a worker. */
  readonly defer: DeferService;
  /** The port the first listener (HTTP or tcp) bound (useful with port 0). */
  readonly port: number;
  /** Each listener's bound port by name. */
  readonly ports: Readonly<Record<string, number>>;
  /** This process's metrics (issue 7); null with `metrics.enabled: false`. */
  readonly metrics: Metrics | null;
  /**
   * Swaps in a new validated config (routes and pools; listener settings need a restart, but
   * TLS certificate files are read again: issue 14).
   * `version` is the primary's count of changes, reported back in `stats()`.
   */
  apply(config: Config, version?: number): void;
  /** Applies the active health verdicts (targets found down by the primary's checks). */
  setDown(down: DownTargets): void;
  /** This process's counters: downstream answers and per-target attempts. */
  stats(): WorkerStats;
  /**
   * Graceful: stop accepting connections; for `acceptGraceMs` (default `shutdown.accept_grace`)
   * keep serving requests that arrive on open keep-alive connections, each answered with
   * `Connection: close`; then close the idle ones, let in-flight requests finish within the
   * grace period, close.
   */
  close(graceMs?: number, acceptGraceMs?: number): Promise<void>;
}

export interface RuntimeOptions {
  /**
   * The process's metrics, when someone else made them (`--workers 0`: shared with the
   * Manager); by default the runtime makes its own, unless `metrics.enabled` is false.
   */
  metrics?: Metrics | null;
  /** Issue 16 item 4: this instance's share of defer limits (delivering process only). */
  share?: () => number;
}

export async function startRuntime(
  config: Config,
  log: Logger,
  options: RuntimeOptions = {},
): Promise<Runtime> {
  const registry = new Registry();
  const metrics =
    options.metrics !== undefined
      ? options.metrics
      : config.metrics.enabled
        ? new Metrics({ version: VERSION, processMetrics: false })
        : null;
  // Batch handlers own undici agents: built per snapshot, kept while a route's options hold (issue 5).
  const batches = new MultiplexRegistry();
  const build = (c: Config) => {
    const { compiled, problems } = compile(c);
    if (!compiled) throw new Error(`invalid config: ${problems.map((p) => p.message).join('; ')}`);
    return buildSnapshot(compiled, registry, c.log.access, batches, c.tracing);
  };
  // Every attempt's outcome feeds its target's counters and passive health (issue 3).
  const forward = recordOutcomes(baseForward);
  // Issue 6: workers accept and enqueue; the primary delivers (delivery-host.ts), or this process
  // when it is the only one — through the same pools and forward as the proxy routes.
  const defer = new DeferService({
    log,
    forward,
    view: (): Snapshot => pipeline.snapshot,
    deliver: !cluster.isWorker,
    metrics,
    share: options.share,
  });
  const pipeline = new Pipeline(build(config), { logger: log, forward, acceptor: defer.acceptor, metrics });
  // Issue 17: tcp listeners route connections by their first bytes; pools from the current snapshot.
  const specs = listenersOf(config);
  const poolOf = (name: string) => pipeline.snapshot.pools.get(name);
  const tcpListeners = specs.flatMap((spec) => {
    const tcp = pipeline.snapshot.tcp.get(spec.name);
    return spec.mode === 'tcp' && tcp !== undefined ? [new TcpListener(spec, tcp, poolOf, log, metrics)] : [];
  });
  const unwatch = metrics?.addData({
    inflight: () => pipeline.inflight,
    targets: () => registry.liveStats(),
    strategies: strategyStats,
    flushBytes: () => {
      for (const t of tcpListeners) t.flushBytes();
    },
  });
  await defer.apply(config);
  const admit = admissionFor(config, pipeline);
  // Issue 14: a client-certificate subject header is removed from requests on every listener.
  const strip = new Set(specs.flatMap((l) => (l.tls?.client_subject_header ? [l.tls.client_subject_header.toLowerCase()] : [])));
  const listeners = specs.filter((spec) => spec.mode !== 'tcp').map((spec) => new Listener(spec, config, pipeline, log, admit, strip));
  // Issue 17: connections accepted, open and closed per listener.
  if (metrics !== null) for (const l of listeners) countConnections(l.server, metrics, l.spec.name);
  let version = 0;
  // Workers each bind their own SO_REUSEPORT socket instead of sharing the primary's:
  // the kernel spreads connections, and a draining worker's closed socket no longer
  // receives connections it would never serve (with cluster's round-robin handle a
  // connection accepted by the primary during shutdown could be handed to a closed
  // worker and hang).
  const shared = cluster.isWorker ? { exclusive: true, reusePort: true } : {};
  try {
    for (const l of listeners) await l.listen(shared);
    for (const t of tcpListeners) await t.listen(shared);
  } catch (err) {
    for (const l of listeners) {
      l.stopAccepting();
      l.close();
    }
    for (const t of tcpListeners) {
      t.stopAccepting();
      await t.close(0);
    }
    throw err;
  }
  // Config order, HTTP and tcp alike.
  const bound = new Map<string, number>([...listeners, ...tcpListeners].map((l) => [l.spec.name, l.port]));
  const ports = Object.fromEntries(specs.map((s) => [s.name, bound.get(s.name) ?? 0]));
  let closing: Promise<void> | null = null;
  return {
    listeners,
    tcpListeners,
    pipeline,
    defer,
    port: ports[specs[0].name],
    ports,
    metrics,
    apply(c: Config, v = version + 1) {
      const snapshot = build(c);
      pipeline.setSnapshot(snapshot);
      // A listener's mode and address need a restart; its `tcp` block is taken at once.
      for (const t of tcpListeners) {
        const tcp = snapshot.tcp.get(t.spec.name);
        if (tcp !== undefined) t.setSpec(tcp);
      }
      version = v;
      // A reload (SIGHUP, POST /config/reload) reaches every process this way; unchanged files are not rebuilt.
      for (const l of listeners) l.refreshCertificates();
      defer.apply(c).catch((err) => log.error({ err }, 'queue: could not apply the new config'));
    },
    setDown(down: DownTargets) {
      registry.setDown(down);
    },
    stats(): WorkerStats {
      return { version, downstream: { ...pipeline.downstream }, targets: registry.stats() };
    },
    close(graceMs = parseDuration(config.shutdown.grace), acceptGraceMs = parseDuration(config.shutdown.accept_grace)) {
      closing ??= (async () => {
        const started = performance.now();
        // Issue 15: stop accepting connections, but not (yet) the idle keep-alive ones, as
        // http.Server.close() would: a client may be writing its next request on one right now,
        // and closing under it is an ECONNRESET. The pipeline answers with Connection: close.
        for (const l of listeners) l.stopAccepting();
        for (const t of tcpListeners) t.stopAccepting();
        // TCP connections have no request boundary to close at: they get the grace, then are cut.
        const tcpClosed = Promise.all(tcpListeners.map((t) => t.close(Math.max(0, graceMs - (performance.now() - started)))));
        const drainedFirst = pipeline.drain();
        // Deliveries get the same grace period, alongside the drain; their leases are released after it.
        const delivering = defer.stopDelivering(graceMs);
        await acceptGrace(listeners, Math.min(acceptGraceMs, graceMs));
        for (const l of listeners) l.closeIdle();
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), Math.max(0, graceMs - (performance.now() - started)));
        });
        // Requests that came during the accept grace are in flight too: wait for them all.
        const drained = drainedFirst.then(() => pipeline.drain()).then(() => false);
        const timedOut = await Promise.race([drained, expired]);
        clearTimeout(timer);
        if (timedOut)
          log.warn({ inflight: pipeline.inflight }, 'grace period over: closing remaining connections');
        pipeline.closeTunnels();
        for (const l of listeners) {
          l.closeAll();
          l.close();
        }
        await tcpClosed;
        await delivering;
        await defer.close();
        await (timedOut ? batches.destroy() : batches.close());
        await (timedOut ? registry.destroy() : registry.close());
        unwatch?.();
      })();
      return closing;
    },
  };
}

/**
 * Waits up to `ms` for the open connections to go (each closes after the answer to a request
 * that arrives on it); returns early when none is left.
 */
async function acceptGrace(listeners: readonly Listener[], ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    let open = 0;
    for (const l of listeners) open += await l.connections();
    if (open === 0) return;
    await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, until - performance.now()))));
  }
}
