/**
 * Every Prometheus metric Manifold exports, defined in this one file (issue 7, DESIGN.md
 * "Module layout"). One `Metrics` per process, on its own prom-client Registry: a worker's
 * holds what it served, the primary's what it decided (health, pools, config) and delivered
 * (the queue); `--workers 0` has one that holds both. The admin API sums the primary's and
 * every worker's (`aggregate()`, prom-client's cluster aggregation) into one exposition.
 *
 * Labels come from config ids only — route, pool, target — plus small closed sets (method,
 * status class, outcome), never raw paths or hosts (STYLE.md §10): the number of series is
 * bounded by the config, whatever clients send.
 *
 * What is counted on the request path is counted once per request, after the answer ends
 * (`request()`, `attempts()`), in plain numbers (cells.ts); everything else is read at scrape
 * time from the counters the components keep anyway (`collect`), so it costs nothing between
 * scrapes.
 */
import {
  AggregatorRegistry,
  collectDefaultMetrics,
  Counter,
  Gauge,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';
import { CellCounter, CellHistogram, type HistogramSeries } from './cells.ts';

/** Request and attempt durations, in seconds: fine enough below 10 ms for p50/p99 on the dashboard. */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60,
]);
/**
 * Connection and tunnel lifetimes, in seconds (issue 17): from a keep-alive connection's or a
 * tunnel's few milliseconds to a day-long WebSocket.
 */
export const CONNECTION_BUCKETS: readonly number[] = Object.freeze([
  0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400,
]);
/** Requests per multiplex batch (max_requests is at most 1000). */
export const BATCH_BUCKETS: readonly number[] = Object.freeze([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]);

/** The label of a request that matched no route. */
export const NO_ROUTE = '_none';
/** Anything outside a closed label set (an unknown method, a status outside 100-599). */
export const OTHER = '_other';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'CONNECT', 'TRACE']);
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

export const methodLabel = (method: string | undefined): string =>
  method !== undefined && METHODS.has(method) ? method : OTHER;

/** The slot of a status's class: 0-4 for 1xx-5xx, 5 (`_other`) for anything else. */
const statusClassIndex = (status: number): number =>
  status >= 100 && status <= 599 ? Math.floor(status / 100) - 1 : CLASSES.length;
export const statusClass = (status: number): string => CLASSES[statusClassIndex(status)] ?? OTHER;

// The shapes read from the features, declared here so that observability imports none of them
// (issue 11 item 3): upstream/stats.ts TargetStats, strategy/stats.ts StrategyCounters,
// strategy/types.ts AttemptRecord and defer/queue.ts RouteDepth each satisfy theirs.

/** One target as one process counts it (upstream/stats.ts `TargetStats`). */
export interface TargetCounts {
  readonly pool: string;
  readonly id: string;
  /** Left its pool, still reported until its last attempt ends. */
  readonly retired: boolean;
  readonly inflight: number;
  readonly ejected: boolean;
  readonly ejections: number;
}

/** A route's strategy running totals in this process (strategy/stats.ts `StrategyCounters`). */
export interface StrategyTotals {
  readonly retries: number;
  readonly hedgesFired: number;
  readonly hedgesWon: number;
  readonly hedgesDenied: number;
}

/** What the metrics read of one attempt (strategy/types.ts `AttemptRecord`). */
export interface AttemptSample {
  readonly target: string;
  readonly outcome: string;
  readonly duration_ms: number;
}

/** The request-path series of one route (Metrics `#routeCells`). */
interface RouteCells {
  /** Method label → series by status class index (1xx…5xx, then `_other`). */
  readonly requests: Map<string, Array<{ value: number } | undefined>>;
  seconds: HistogramSeries | null;
  /** Pool → target → its duration series and its counters by outcome. */
  readonly attempts: Map<string, Map<string, { seconds: HistogramSeries; outcomes: Map<string, { value: number }> }>>;
}

/** Jobs of one route by state (defer/queue.ts `RouteDepth`): `route` plus a count per state. */
export interface QueueDepth {
  readonly route: string;
  readonly [state: string]: string | number;
}

/** What a serving process reads at scrape time (its runtime; the primary's delivery host). */
export interface DataSource {
  /** Downstream requests being answered now. */
  inflight(): number;
  targets(): readonly TargetCounts[];
  /** Per route id, where strategies run (a runtime); absent = none here. */
  strategies?(): Readonly<Record<string, StrategyTotals>>;
  /**
   * Called before `manifold_bytes_total` is read: counts (through `bytes()`) what open
   * connections moved so far, so a long TCP connection shows in the byte rate before it ends.
   */
  flushBytes?(): void;
}

/** The control plane's view (the Manager), read at scrape time in the primary. */
export interface ControlSource {
  configVersion(): number;
  workers(): number;
  pools(): ReadonlyArray<{ name: string; targets: number }>;
  /** `up`: active checks pass (true also without checks); `drain`: an operator drained it. */
  targets(): ReadonlyArray<{ pool: string; id: string; up: boolean; drain: boolean }>;
  /** Issue 16: the cluster store's reachability and the instances up; null without `cluster.store`. */
  cluster?(): { available: boolean; instances: number } | null;
}

/** The process that delivers deferred requests reads the queue depth at scrape time. */
export type QueueSource = () => Promise<readonly QueueDepth[]> | null;

/** How one delivery attempt of a deferred request ended. */
export type DeliveryResult = 'delivered' | 'retry' | 'dead';

/** What a tunnel carries: a CONNECT's bytes, or an upgraded connection's (WebSocket). */
export type TunnelKind = 'connect' | 'upgrade';

/** How an accepted deferred request was acknowledged. */
export type AcceptMode = 'queued' | 'direct' | 'duplicate';

export interface MetricsOptions {
  /** Process metrics (CPU, memory, event loop, GC); default true. */
  processMetrics?: boolean;
  /** The package version, exported as `manifold_build_info{version}`. */
  version?: string;
}

export class Metrics {
  readonly registry = new Registry();
  readonly #data = new Set<DataSource>();
  readonly #queues = new Set<QueueSource>();
  #control: ControlSource | null = null;

  readonly #requests: CellCounter;
  readonly #requestSeconds: CellHistogram;
  readonly #attempts: CellCounter;
  readonly #attemptSeconds: CellHistogram;
  readonly #batchSize: CellHistogram;
  readonly #items: CellCounter;
  readonly #accepted: CellCounter;
  readonly #acceptSeconds: CellHistogram;
  readonly #deliveries: CellCounter;
  readonly #deliverySeconds: CellHistogram;
  readonly #deadLetters: CellCounter;
  readonly #connAccepted: CellCounter;
  readonly #connClosed: CellCounter;
  readonly #connSeconds: CellHistogram;
  /** Open connections per listener; read by the gauge at scrape time. */
  readonly #connOpen = new Map<string, number>();
  readonly #tunnelsOpened: CellCounter;
  readonly #tunnelsClosed: CellCounter;
  readonly #tunnelSeconds: CellHistogram;
  /** Open tunnels per `route\0kind`. */
  readonly #tunnelsOpen = new Map<string, number>();
  readonly #bytes: CellCounter;
  /** `manifold_bytes_total`'s in/out series by route, then target: one lookup per request. */
  readonly #byteCells = new Map<string, Map<string, readonly [{ value: number }, { value: number }]>>();
  #byteGeneration = 0;
  readonly #routeCache = new Map<string, RouteCells>();
  #routeGeneration = 0;

  constructor(options: MetricsOptions = {}) {
    const registers = [this.registry];
    const data = this.#data;
    const queues = this.#queues;
    const control = () => this.#control;
    // What is counted as it happens goes into cells (cells.ts); gauges and the counters that
    // mirror a component's own totals are prom-client's, filled in by `collect` at scrape time.
    const counter = (name: string, help: string, labelNames: string[]) =>
      new CellCounter(this.registry, name, help, labelNames);
    const histogram = (name: string, help: string, labelNames: string[], buckets = DURATION_BUCKETS) =>
      new CellHistogram(this.registry, name, help, labelNames, buckets);

    // ---- downstream (counted by the pipeline when an answer ends) ----
    this.#requests = counter(
      'manifold_downstream_requests_total',
      'Downstream requests answered, by route, method and status class (499 = client closed).',
      ['route', 'method', 'status_class'],
    );
    this.#requestSeconds = histogram(
      'manifold_downstream_request_duration_seconds',
      'From the request head to the end of the answer, by route.',
      ['route'],
    );
    new Gauge({
      name: 'manifold_downstream_inflight',
      help: 'Downstream requests being answered now, open tunnels (WebSockets) included.',
      registers,
      collect() {
        let n = 0;
        for (const s of data) n += s.inflight();
        this.set(n);
      },
    });

    // ---- attempts (one per try of one request against one target) ----
    this.#attempts = counter(
      'manifold_attempts_total',
      'Attempts by route, pool, target and outcome (accepted, relayed, rejected, failed, cancelled).',
      ['route', 'pool', 'target', 'outcome'],
    );
    this.#attemptSeconds = histogram(
      'manifold_attempt_duration_seconds',
      'From an attempt’s start to its response headers (or failure, or cancellation).',
      ['route', 'pool', 'target'],
    );
    const strategyCounter = (
      name: string,
      help: string,
      pick: (c: StrategyTotals) => number,
    ) =>
      new Counter({
        name,
        help,
        labelNames: ['route'],
        registers,
        collect() {
          // The strategy counters are this process's running totals (strategy/stats.ts).
          this.reset();
          for (const s of data)
            for (const [route, c] of Object.entries(s.strategies?.() ?? {}))
              if (pick(c) > 0) this.inc({ route }, pick(c));
        },
      });
    strategyCounter(
      'manifold_retries_total',
      'Attempts sent after an earlier one failed or was not accepted.',
      (c) => c.retries,
    );
    strategyCounter('manifold_hedges_fired_total', 'Attempts a hedge timer launched.', (c) => c.hedgesFired);
    strategyCounter(
      'manifold_hedges_won_total',
      'Hedges whose answer was the one sent downstream.',
      (c) => c.hedgesWon,
    );
    strategyCounter(
      'manifold_hedges_denied_total',
      'Hedge timers that fired with the hedge budget spent.',
      (c) => c.hedgesDenied,
    );

    // ---- targets, as each serving process sees them ----
    type PerTarget = { reset(): void; inc(labels: { pool: string; target: string }, n: number): void };
    /** A collect that sums `pick` per target over this process's data sources. */
    const perTarget = (pick: (t: TargetCounts) => number) =>
      function (this: PerTarget) {
        this.reset();
        for (const s of data)
          for (const t of s.targets()) if (!t.retired) this.inc({ pool: t.pool, target: t.id }, pick(t));
      };
    new Gauge({
      name: 'manifold_target_inflight',
      help: 'Attempts in flight to a target.',
      labelNames: ['pool', 'target'],
      registers,
      collect: perTarget((t) => t.inflight),
    });
    new Gauge({
      name: 'manifold_target_ejected',
      help: 'Processes that have the target passively ejected now (0 = none).',
      labelNames: ['pool', 'target'],
      registers,
      collect: perTarget((t) => (t.ejected ? 1 : 0)),
    });
    new Counter({
      name: 'manifold_target_ejections_total',
      help: 'Passive ejections of a target (outlier detection).',
      labelNames: ['pool', 'target'],
      registers,
      collect: perTarget((t) => t.ejections),
    });

    // ---- the control plane (the primary, or the only process) ----
    /** A 0/1 gauge per target of the served config, from the Manager. */
    const controlTarget = (name: string, help: string, on: (t: { up: boolean; drain: boolean }) => boolean) =>
      new Gauge({
        name,
        help,
        labelNames: ['pool', 'target'],
        registers,
        aggregator: 'max',
        collect() {
          this.reset();
          for (const t of control()?.targets() ?? []) this.set({ pool: t.pool, target: t.id }, on(t) ? 1 : 0);
        },
      });
    controlTarget(
      'manifold_target_up',
      'Active health of a target: 1 when its checks pass (or it has none), 0 when found down.',
      (t) => t.up,
    );
    controlTarget(
      'manifold_target_drained',
      '1 when an operator drained the target (no new attempts), else 0.',
      (t) => t.drain,
    );
    new Gauge({
      name: 'manifold_pool_targets',
      help: 'Targets configured in a pool (file plus admin API changes).',
      labelNames: ['pool'],
      registers,
      aggregator: 'max',
      collect() {
        this.reset();
        for (const p of control()?.pools() ?? []) this.set({ pool: p.name }, p.targets);
      },
    });
    new Gauge({
      name: 'manifold_config_version',
      help: 'Changes applied since start (reloads and admin API changes).',
      registers,
      aggregator: 'max',
      collect() {
        const c = control();
        if (c !== null) this.set(c.configVersion());
      },
    });
    new Gauge({
      name: 'manifold_cluster_store_up',
      help: 'Issue 16: 1 while the cluster store (PostgreSQL) answers, 0 while it is away; absent without cluster.store.',
      registers,
      aggregator: 'max',
      collect() {
        const c = control()?.cluster?.() ?? null;
        this.reset();
        if (c !== null) this.set(c.available ? 1 : 0);
      },
    });
    new Gauge({
      name: 'manifold_cluster_instances',
      help: 'Issue 16: gateways up in the cluster registry at the last heartbeat (they share the defer limits).',
      registers,
      aggregator: 'max',
      collect() {
        const c = control()?.cluster?.() ?? null;
        this.reset();
        if (c !== null) this.set(c.instances);
      },
    });
    new Gauge({
      name: 'manifold_workers',
      help: 'Worker processes serving traffic (1 with --workers 0).',
      registers,
      aggregator: 'max',
      collect() {
        const c = control();
        if (c !== null) this.set(c.workers());
      },
    });
    const info = new Gauge({
      name: 'manifold_build_info',
      help: 'Always 1; the labels say which Manifold and Node.js run.',
      labelNames: ['version', 'node'],
      registers,
      aggregator: 'max',
    });
    info.set({ version: options.version ?? 'unknown', node: process.version }, 1);

    // ---- multiplex ----
    this.#batchSize = histogram(
      'manifold_multiplex_batch_size',
      'Requests per multiplex batch.',
      ['route'],
      BATCH_BUCKETS,
    );
    this.#items = counter(
      'manifold_multiplex_items_total',
      'Multiplex items by outcome: the status class of the answer, or the item error code.',
      ['route', 'outcome'],
    );

    // ---- defer: accepts (where requests arrive) and deliveries (where they are delivered) ----
    this.#accepted = counter(
      'manifold_queue_accepted_total',
      'Deferred requests acknowledged: queued, delivered directly (overflow mode) or a duplicate Idempotency-Key.',
      ['route', 'mode'],
    );
    this.#acceptSeconds = histogram(
      'manifold_queue_accept_duration_seconds',
      'From the request head to the durable commit (or direct delivery) that allows the answer.',
      ['route'],
    );
    this.#deliveries = counter(
      'manifold_delivery_attempts_total',
      'Delivery attempts of deferred requests: delivered, retry (scheduled again) or dead (dead-lettered).',
      ['route', 'outcome'],
    );
    this.#deliverySeconds = histogram(
      'manifold_delivery_duration_seconds',
      'One delivery attempt, from its start to the target’s answer or failure.',
      ['route'],
    );
    this.#deadLetters = counter(
      'manifold_queue_dead_letters_total',
      'Jobs that became dead letters (out of attempts or failed permanently).',
      ['route'],
    );
    new Gauge({
      name: 'manifold_queue_jobs',
      help: 'Jobs in the queue by route and state (pending, inflight, done, dead); read from the store.',
      labelNames: ['route', 'state'],
      registers,
      // With several gateways on one PostgreSQL queue each reports the same shared depth.
      aggregator: 'max',
      async collect() {
        this.reset();
        for (const source of queues) {
          const depth = await source()?.catch(() => null);
          for (const row of depth ?? []) {
            const { route, ...states } = row;
            for (const [state, n] of Object.entries(states)) this.set({ route, state }, n as number);
          }
        }
      },
    });

    // ---- connections, tunnels and bytes (issue 17: Layer7Router's live figures) ----
    this.#connAccepted = counter(
      'manifold_connections_accepted_total',
      'Downstream connections accepted, by listener (`default`: the `listen` one).',
      ['listener'],
    );
    this.#connClosed = counter('manifold_connections_closed_total', 'Downstream connections closed, by listener.', [
      'listener',
    ]);
    this.#connSeconds = histogram(
      'manifold_connection_duration_seconds',
      'From a downstream connection’s accept to its close, by listener.',
      ['listener'],
      CONNECTION_BUCKETS,
    );
    const connOpen = this.#connOpen;
    new Gauge({
      name: 'manifold_connections_open',
      help: 'Downstream connections open now, by listener.',
      labelNames: ['listener'],
      registers,
      collect() {
        this.reset();
        for (const [listener, n] of connOpen) this.set({ listener }, n);
      },
    });
    this.#tunnelsOpened = counter(
      'manifold_tunnels_opened_total',
      'Tunnels opened, by route and kind (`connect`: a CONNECT tunnel; `upgrade`: a WebSocket or other upgrade).',
      ['route', 'kind'],
    );
    this.#tunnelsClosed = counter('manifold_tunnels_closed_total', 'Tunnels closed, by route and kind.', [
      'route',
      'kind',
    ]);
    this.#tunnelSeconds = histogram(
      'manifold_tunnel_duration_seconds',
      'From a tunnel’s opening (200 or 101 sent) to its close, by route and kind.',
      ['route', 'kind'],
      CONNECTION_BUCKETS,
    );
    const tunnelsOpen = this.#tunnelsOpen;
    new Gauge({
      name: 'manifold_tunnels_open',
      help: 'Tunnels open now, by route and kind.',
      labelNames: ['route', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const [key, n] of tunnelsOpen) {
          const [route, kind] = key.split('\u0000');
          this.set({ route, kind }, n);
        }
      },
    });
    this.#bytes = counter(
      'manifold_bytes_total',
      'Bytes on downstream connections, heads included, by route, target and direction (`in`: from the downstream, `out`: to it); counted when a request or tunnel ends. Target `_direct`: a CONNECT tunnel to the destination it named; `_none`: no target.',
      ['route', 'target', 'direction'],
    );
    this.#bytes.collect = () => {
      for (const d of data) d.flushBytes?.();
    };

    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  // ---- sources read at scrape time; each returns its unregister function ----

  addData(source: DataSource): () => void {
    this.#data.add(source);
    return () => this.#data.delete(source);
  }

  addQueue(source: QueueSource): () => void {
    this.#queues.add(source);
    return () => this.#queues.delete(source);
  }

  setControl(source: ControlSource | null): void {
    this.#control = source;
  }

  // ---- counted as things happen ----

  /**
   * One downstream answer ended (or the client went away: status 499). `seconds` null: counted
   * without a duration (a WebSocket tunnel, whose lifetime would swamp the route's latency).
   */
  request(route: string | null, method: string | undefined, status: number, seconds: number | null): void {
    const r = route ?? NO_ROUTE;
    const cells = this.#routeCells(r);
    const m = methodLabel(method);
    let byClass = cells.requests.get(m);
    if (byClass === undefined) cells.requests.set(m, (byClass = []));
    const k = statusClassIndex(status);
    (byClass[k] ??= this.#requests.cell([r, m, statusClass(status)])).value++;
    if (seconds !== null) this.#requestSeconds.observeIn((cells.seconds ??= this.#requestSeconds.cell([r])), seconds);
  }

  /** The attempts of one proxied request, once it ended. */
  attempts(route: string, pool: string, records: readonly AttemptSample[]): void {
    const cells = this.#routeCells(route);
    let byTarget = cells.attempts.get(pool);
    if (byTarget === undefined) cells.attempts.set(pool, (byTarget = new Map()));
    for (const a of records) {
      let t = byTarget.get(a.target);
      if (t === undefined)
        byTarget.set(a.target, (t = { seconds: this.#attemptSeconds.cell([route, pool, a.target]), outcomes: new Map() }));
      let c = t.outcomes.get(a.outcome);
      if (c === undefined) t.outcomes.set(a.outcome, (c = this.#attempts.cell([route, pool, a.target, a.outcome])));
      c.value++;
      this.#attemptSeconds.observeIn(t.seconds, a.duration_ms / 1000);
    }
  }

  /**
   * A route's series of the request path, found by its id alone (issue 11 item 4: no label
   * key joined per request). Dropped whole when one of their families was reset.
   */
  #routeCells(route: string): RouteCells {
    const gen =
      this.#requests.generation + this.#requestSeconds.generation + this.#attempts.generation + this.#attemptSeconds.generation;
    if (gen !== this.#routeGeneration) {
      this.#routeCache.clear();
      this.#routeGeneration = gen;
    }
    let cells = this.#routeCache.get(route);
    if (cells === undefined) this.#routeCache.set(route, (cells = { requests: new Map(), seconds: null, attempts: new Map() }));
    return cells;
  }

  /** A multiplex batch answered: its size and each item's outcome. */
  batch(route: string, items: ReadonlyArray<{ status: number } | { error: { code: string } }>): void {
    this.#batchSize.observe([route], items.length);
    for (const item of items)
      this.#items.inc([route, 'error' in item ? item.error.code : statusClass(item.status)]);
  }

  accepted(route: string, mode: AcceptMode, seconds: number): void {
    this.#accepted.inc([route, mode]);
    this.#acceptSeconds.observe([route], seconds);
  }

  delivery(route: string, outcome: DeliveryResult, seconds: number): void {
    this.#deliveries.inc([route, outcome]);
    this.#deliverySeconds.observe([route], seconds);
    if (outcome === 'dead') this.#deadLetters.inc([route]);
  }

  /** A downstream connection was accepted on `listener`. */
  connectionOpened(listener: string): void {
    this.#connAccepted.inc([listener]);
    this.#connOpen.set(listener, (this.#connOpen.get(listener) ?? 0) + 1);
  }

  connectionClosed(listener: string, seconds: number): void {
    this.#connClosed.inc([listener]);
    this.#connSeconds.observe([listener], seconds);
    this.#connOpen.set(listener, (this.#connOpen.get(listener) ?? 1) - 1);
  }

  tunnelOpened(route: string, kind: TunnelKind): void {
    this.#tunnelsOpened.inc([route, kind]);
    const key = `${route}\u0000${kind}`;
    this.#tunnelsOpen.set(key, (this.#tunnelsOpen.get(key) ?? 0) + 1);
  }

  tunnelClosed(route: string, kind: TunnelKind, seconds: number): void {
    this.#tunnelsClosed.inc([route, kind]);
    this.#tunnelSeconds.observe([route, kind], seconds);
    const key = `${route}\u0000${kind}`;
    this.#tunnelsOpen.set(key, (this.#tunnelsOpen.get(key) ?? 1) - 1);
  }

  /** Bytes a request or tunnel moved on its downstream connection (once, when it ended). */
  bytes(route: string | null, target: string | null, inBytes: number, outBytes: number): void {
    const r = route ?? NO_ROUTE;
    const t = target ?? NO_ROUTE;
    const family = this.#bytes;
    if (this.#byteGeneration !== family.generation) {
      this.#byteCells.clear();
      this.#byteGeneration = family.generation;
    }
    let byTarget = this.#byteCells.get(r);
    if (byTarget === undefined) this.#byteCells.set(r, (byTarget = new Map()));
    let cells = byTarget.get(t);
    if (cells === undefined) byTarget.set(t, (cells = [family.cell([r, t, 'in']), family.cell([r, t, 'out'])]));
    cells[0].value += inBytes;
    cells[1].value += outBytes;
  }

  /** This process's metrics, in the form `aggregate()` sums. */
  snapshot(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    return this.registry.getMetricsAsJSON();
  }
}

export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

/** Sums the snapshots of several processes into one registry (text: `.metrics()`). */
export function aggregate(snapshots: readonly MetricsSnapshot[]): Registry {
  return AggregatorRegistry.aggregate(snapshots as MetricsSnapshot[]);
}

export const CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;
