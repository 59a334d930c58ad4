/**
 * The defer facade of one process (issue 6): the store, the Acceptor the pipeline calls for
 * `defer` routes, and — where deliveries run — one Deliverer per defer route plus the Janitor.
 * Role-named parts behind one object, as pg-boss does (STYLE.md "Smaller habits").
 *
 * Who delivers (DESIGN.md "Processes"): the primary, or the only process with `--workers 0`.
 * Workers only accept; every process opens the same store (SQLite is safe across processes,
 * PostgreSQL across machines). The queue is opened when a route first defers, and kept;
 * `queue` settings take effect at the next start.
 *
 * Lifetimes, in start order and stopped in reverse (STYLE.md §12): store → deliverers and
 * janitor; `stopDelivering(grace)` first (stop claiming, finish or release), then `close()`
 * once the listener has drained, so accepts in flight still commit.
 */
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { TracingConfig } from '../observability/trace.ts';
import type { Forward } from '../proxy/forward.ts';
import type { Route } from '../routing/route.ts';
import type { Pool } from '../upstream/pool.ts';
import { Acceptor } from './accept.ts';
import { Deliverer, type DeliveryTarget } from './deliverer.ts';
import { Janitor } from './janitor.ts';
import { describeQueue, instanceName, openQueue } from './open.ts';
import type { Queue } from './queue.ts';
import { compileQueue, type DeferRoute, type DeferSpec, isDeferRoute, type QueueConfig } from './spec.ts';

/** What the deliverers read: the routes and pools served now (a snapshot has both). */
export interface DeferView {
  readonly routes: readonly Route[];
  readonly pools: ReadonlyMap<string, Pool>;
  /** `tracing` as served (issue 7); null = off. */
  readonly tracing: Readonly<TracingConfig> | null;
}

export interface DeferServiceOptions {
  log: Logger;
  /** The same outbound stack as proxy routes (with outcome recording for passive health). */
  forward: Forward;
  view: () => DeferView;
  /** Run deliverers and the janitor in this process; false = accept only (a worker). */
  deliver: boolean;
  /** Deliveries are counted here, and the queue depth read from here at scrape time (issue 7). */
  metrics?: Metrics | null;
  /** Issue 16 item 4: this instance's share of every defer route's rate and concurrency (Deliverer). */
  share?: () => number;
}

/** A deliverer whose route left the config finishes what it started within this. */
const REMOVED_ROUTE_GRACE_MS = 60_000;

export function deferRoutes(routes: readonly Route[]): DeferRoute[] {
  return routes.filter(isDeferRoute);
}

export class DeferService {
  readonly acceptor: Acceptor;
  readonly #options: DeferServiceOptions;
  readonly #log: Logger;
  readonly #deliverers = new Map<string, Deliverer>();
  #queue: Queue | null = null;
  #queueKey = '';
  #opening: Promise<Queue> | null = null;
  #janitor: Janitor | null = null;
  #stopping: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  #unwatch: (() => void) | undefined;

  constructor(options: DeferServiceOptions) {
    this.#options = options;
    this.#log = options.log;
    this.acceptor = new Acceptor({ forward: options.forward, log: options.log });
    // The depth is the store's, so only the process that delivers reports it (once per store).
    if (options.deliver) this.#unwatch = options.metrics?.addQueue(() => this.#queue?.depth() ?? null);
  }

  /** The open store, for the admin API; null until a route defers. */
  get queue(): Queue | null {
    return this.#queue;
  }

  /** Deliveries in flight in this process, by route id. */
  inflight(): Record<string, number> {
    return Object.fromEntries([...this.#deliverers].map(([id, d]) => [id, d.inflight]));
  }

  /**
   * Call after every new snapshot: opens the store when a route defers for the first time,
   * then starts deliverers for new defer routes (routes that left stop by themselves).
   * Rejects when the store cannot be opened (at start: the gateway does not start).
   */
  /** `config`: the served config's queue block and listen port (config/schema.ts Config has both). */
  async apply(config: { readonly queue: QueueConfig; readonly listen: { readonly port: number } }): Promise<void> {
    if (this.#stopping !== null) return;
    const routes = deferRoutes(this.#options.view().routes);
    if (routes.length === 0 && this.#queue === null) return;
    const spec = compileQueue(config.queue, []);
    const key = JSON.stringify(spec);
    if (this.#queue === null) {
      // Only the delivering process claims, so only it needs the stable name (issue 16 item 6).
      const instance = this.#options.deliver ? instanceName(spec, config.listen.port) : undefined;
      // The release is part of the opening: it runs once, before any deliverer claims.
      this.#opening ??= openQueue(spec, this.#log, instance)
        .then(async (queue) => {
          if (this.#options.deliver) await this.#releaseOwn(queue);
          return queue;
        })
        .finally(() => {
          this.#opening = null;
        });
      const queue = await this.#opening;
      if (this.#stopping !== null) {
        await queue.close();
        return;
      }
      this.#queue = queue;
      this.#queueKey = key;
      this.acceptor.setQueue(queue);
      this.#log.info(
        { queue: describeQueue(spec), deliver: this.#options.deliver, instance: queue.instance },
        'queue open',
      );
      if (this.#options.deliver) {
        this.#janitor = new Janitor({
          queue,
          log: this.#log,
          retentionMs: spec.retentionMs,
          intervalMs: spec.janitorIntervalMs,
        });
        this.#janitor.start();
      }
    } else if (key !== this.#queueKey) {
      this.#log.warn('queue settings changed: they take effect after a restart');
    }
    if (this.#options.deliver) this.#sync(routes);
  }

  /**
   * Before the first claim: the jobs this instance's previous life had in flight when it was
   * killed go back to pending at once (attempt not counted) instead of waiting for their leases
   * (issue 16 item 6). A failure only means they wait for the lease, as before.
   */
  async #releaseOwn(queue: Queue): Promise<void> {
    try {
      const jobs = await queue.releaseOwn();
      if (jobs > 0) this.#log.warn({ jobs, instance: queue.instance }, 'released the jobs left in flight by this instance before its restart');
    } catch (err) {
      this.#log.error({ err }, 'could not release the jobs of a previous life; they wait for their lease');
    }
  }

  #sync(routes: readonly DeferRoute[]): void {
    const queue = this.#queue!;
    const wanted = new Set(routes.map((r) => r.id));
    for (const [id, d] of this.#deliverers) {
      if (wanted.has(id)) continue;
      this.#deliverers.delete(id);
      void d.stop(REMOVED_ROUTE_GRACE_MS);
    }
    for (const route of routes) {
      const running = this.#deliverers.get(route.id);
      if (running !== undefined) {
        running.wake();
        continue;
      }
      const d = new Deliverer({
        routeId: route.id,
        queue,
        forward: this.#options.forward,
        log: this.#log,
        resolve: () => this.#resolve(route.id),
        metrics: this.#options.metrics ?? null,
        share: this.#options.share,
      });
      this.#deliverers.set(route.id, d);
      d.start();
    }
  }

  /** The route as served now; read per claim, so a reload changes rate, concurrency, pool. */
  #resolve(routeId: string): DeliveryTarget | null {
    const view = this.#options.view();
    const route = view.routes.find((r) => r.id === routeId);
    if (route === undefined || !isDeferRoute(route)) return null;
    const spec: DeferSpec = route.action.spec;
    return { route, spec, pool: view.pools.get(spec.pool), tracing: view.tracing !== null };
  }

  /** Stop claiming; in-flight deliveries get `graceMs`, then are aborted and released. */
  stopDelivering(graceMs: number): Promise<void> {
    this.#stopping ??= (async () => {
      await this.#janitor?.close();
      await Promise.all([...this.#deliverers.values()].map((d) => d.stop(graceMs)));
      this.#deliverers.clear();
    })();
    return this.#stopping;
  }

  /** Stops delivering (at once, if not yet) and closes the store after its pending commits. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.stopDelivering(0);
      this.#unwatch?.();
      const queue = this.#queue ?? (await this.#opening?.catch(() => null)) ?? null;
      this.acceptor.setQueue(null);
      await queue?.close();
    })();
    return this.#closing;
  }
}
