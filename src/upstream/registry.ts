/**
 * Live upstream objects across snapshots. Dispatchers (and so keep-alive connections) are
 * keyed by origin and connection settings and reused by every snapshot that still names
 * them; the ones a new snapshot no longer needs are closed gracefully (in-flight requests
 * finish first, as undici's `close()` does).
 */
import { Pool as UndiciPool } from 'undici';
import type { PoolSpec, TargetSpec } from '../config/compile.ts';
import { Pool } from './pool.ts';
import { SELECTORS } from './selectors/index.ts';
import { Target } from './target.ts';

function dispatcherKey(pool: PoolSpec, t: TargetSpec): string {
  return `${t.origin}|${pool.connections}|${pool.connectTimeoutMs}|${pool.keepAliveTimeoutMs}`;
}

export class Registry {
  #dispatchers = new Map<string, UndiciPool>();
  #targets = new Map<string, Target>();

  /** Builds the pools of a snapshot, reusing what exists, then closes what is no longer used. */
  provision(specs: readonly PoolSpec[]): Map<string, Pool> {
    const dispatchers = new Map<string, UndiciPool>();
    const targets = new Map<string, Target>();
    const pools = new Map<string, Pool>();
    for (const spec of specs) {
      const live = spec.targets.map((t) => {
        const key = dispatcherKey(spec, t);
        let d = dispatchers.get(key) ?? this.#dispatchers.get(key);
        if (!d) {
          d = new UndiciPool(t.origin, {
            connections: spec.connections,
            connect: { timeout: spec.connectTimeoutMs },
            keepAliveTimeout: spec.keepAliveTimeoutMs,
            keepAliveMaxTimeout: Math.max(spec.keepAliveTimeoutMs, 1000),
            // The route's own headers/idle timeouts are passed per request.
            headersTimeout: 0,
            bodyTimeout: 0,
          });
        }
        dispatchers.set(key, d);
        const tkey = `${spec.name}|${t.id}|${key}`;
        const prev = this.#targets.get(tkey);
        const target = prev && prev.spec.url === t.url ? prev : new Target(t, d);
        targets.set(tkey, target);
        return target;
      });
      pools.set(spec.name, new Pool(spec.name, live, SELECTORS[spec.selector]()));
    }
    for (const [key, d] of this.#dispatchers) if (!dispatchers.has(key)) void d.close().catch(() => {});
    this.#dispatchers = dispatchers;
    this.#targets = targets;
    return pools;
  }

  /** Graceful: waits for in-flight requests on every dispatcher. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#dispatchers.values()].map((d) => d.close()));
    this.#dispatchers.clear();
    this.#targets.clear();
  }

  /** Immediate: aborts whatever is still in flight. */
  async destroy(): Promise<void> {
    await Promise.allSettled([...this.#dispatchers.values()].map((d) => d.destroy()));
    this.#dispatchers.clear();
    this.#targets.clear();
  }
}
