/**
 * Live multiplex handlers across snapshots (issue 5), as upstream/registry.ts does for
 * dispatchers. A handler owns an undici Agent whose pooled connections were checked against
 * ITS route's allow list, so handlers are never shared between routes: one per route id and
 * options. A new snapshot reuses the handler of a route whose options did not change (its
 * keep-alive connections and DNS cache survive a reload) and retires the others.
 *
 * A retired handler is closed once the batches that already hold it are done: a request reads
 * the snapshot once, then may spend a while reading its body before `run()`, and a handler
 * closed under it would fail every item. `use()` counts those holders.
 */
import type { Route } from '../routing/route.ts';
import { createMultiplexHandler, type HandlerDeps, type MultiplexHandler } from './handler.ts';
import type { MultiplexAction, MultiplexOptions } from './schema.ts';

/** What a snapshot holds for one multiplex route. */
export interface MultiplexLease {
  /**
   * Runs `fn` with the route's handler; the handler stays open until `fn` settles even if a
   * newer snapshot retires it meanwhile. Call it synchronously after reading the snapshot.
   */
  use<T>(fn: (handler: MultiplexHandler) => Promise<T>): Promise<T>;
}

class Entry implements MultiplexLease {
  readonly handler: MultiplexHandler;
  readonly #onClosed: (entry: Entry) => void;
  #users = 0;
  #retired = false;
  #closed: Promise<void> | null = null;

  constructor(options: MultiplexOptions, deps: HandlerDeps, onClosed: (entry: Entry) => void) {
    this.handler = createMultiplexHandler(options, deps);
    this.#onClosed = onClosed;
  }

  async use<T>(fn: (handler: MultiplexHandler) => Promise<T>): Promise<T> {
    this.#users++;
    try {
      return await fn(this.handler);
    } finally {
      if (--this.#users === 0 && this.#retired) void this.close();
    }
  }

  /** No new snapshot will hand it out: close it when its last batch ends. */
  retire(): void {
    this.#retired = true;
    if (this.#users === 0) void this.close();
  }

  close(): Promise<void> {
    this.#closed ??= this.handler
      .close()
      .catch(() => {})
      .finally(() => this.#onClosed(this));
    return this.#closed;
  }

  destroy(): Promise<void> {
    return this.handler.destroy().catch(() => {});
  }
}

const isMultiplex = (route: Route): route is Route<MultiplexAction> => route.action.kind === 'multiplex';

export class MultiplexRegistry {
  readonly #deps: HandlerDeps;
  /** `${route id}\0${options key}` → entry, for the latest snapshot. */
  #entries = new Map<string, Entry>();
  /** Retired by a newer snapshot, still running batches of an older one. */
  readonly #retiring = new Set<Entry>();
  readonly #forget = (entry: Entry) => this.#retiring.delete(entry);

  constructor(deps: HandlerDeps = {}) {
    this.#deps = deps;
  }

  /** The handlers of a snapshot's multiplex routes, by route id; retires the ones no longer named. */
  provision(routes: readonly Route[]): ReadonlyMap<string, MultiplexLease> {
    const entries = new Map<string, Entry>();
    const byRoute = new Map<string, MultiplexLease>();
    for (const route of routes) {
      if (!isMultiplex(route)) continue;
      const action = route.action;
      const key = `${route.id}\u0000${action.key}`;
      const entry = this.#entries.get(key) ?? new Entry(action.options, this.#deps, this.#forget);
      entries.set(key, entry);
      byRoute.set(route.id, entry);
    }
    for (const [key, entry] of this.#entries) {
      if (entries.has(key)) continue;
      this.#retiring.add(entry);
      entry.retire();
    }
    this.#entries = entries;
    return byRoute;
  }

  /** Graceful: every handler closes once its batches (each bounded by its deadline) end. */
  async close(): Promise<void> {
    await Promise.all([...this.#entries.values(), ...this.#retiring].map((e) => e.close()));
    this.#entries.clear();
  }

  /** Immediate: aborts whatever is still in flight. */
  async destroy(): Promise<void> {
    await Promise.all([...this.#entries.values(), ...this.#retiring].map((e) => e.destroy()));
    this.#entries.clear();
    this.#retiring.clear();
  }

  /** Handlers open: the latest snapshot's and retired ones still running batches (tests). */
  get size(): { live: number; retiring: number } {
    return { live: this.#entries.size, retiring: this.#retiring.size };
  }
}
