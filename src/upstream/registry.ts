/**
 * Live upstream objects across snapshots. Dispatchers (and so keep-alive connections) are
 * keyed by origin and connection settings and reused by every snapshot that still names
 * them; the ones a new snapshot no longer needs are closed gracefully (in-flight requests
 * finish first, as undici's `close()` does) — which is also how a removed target drains.
 *
 * Target states (health, ejection, counters; state.ts) are keyed by pool, id and URL and
 * carried into each new snapshot, so a reload or a weight change forgets nothing. A state
 * whose target left keeps being reported (as `retired`) until its last attempt ends.
 */
import type { Dispatcher } from 'undici';
import { own } from '../lib/names.ts';
import { connectKey, targetDispatcher } from './connector.ts';
import { SourceAddresses } from './local-addresses.ts';
import { Pool } from './pool.ts';
import { SELECTORS } from './selectors/index.ts';
import type { PoolSpec, TargetSpec } from './spec.ts';
import { PoolHealth, TargetState } from './state.ts';
import type { TargetStats } from './stats.ts';
import { Target } from './target.ts';

function dispatcherKey(pool: PoolSpec, t: TargetSpec): string {
  return `${t.origin}|${pool.connections}|${pool.keepAliveTimeoutMs}|${connectKey(pool)}`;
}

const stateKey = (pool: string, t: { id: string; url: string }) => `${pool}\u0000${t.id}\u0000${t.url}`;

/**
 * Targets the primary's active checks found down: pool name → target ids. Keyed by pool names,
 * so read with `own()` (a pool may be named `constructor`; issue 15).
 */
export type DownTargets = Readonly<Record<string, readonly string[]>>;

export class Registry {
  #dispatchers = new Map<string, Dispatcher>();
  /** Each pool's source-address rotation, by pool name and addresses. */
  #sources = new Map<string, SourceAddresses>();
  #states = new Map<string, TargetState>();
  #groups = new Map<string, PoolHealth>();
  /** Left their pool with attempts still in flight. */
  #retired = new Set<TargetState>();
  #down: DownTargets = {};

  /** Builds the pools of a snapshot, reusing what exists, then closes what is no longer used. */
  provision(specs: readonly PoolSpec[]): Map<string, Pool> {
    const dispatchers = new Map<string, Dispatcher>();
    const states = new Map<string, TargetState>();
    const groups = new Map<string, PoolHealth>();
    const pools = new Map<string, Pool>();
    const sourceSets = new Map<string, SourceAddresses>();
    for (const spec of specs) {
      const group = this.#groups.get(spec.name) ?? new PoolHealth(spec.name);
      group.configure(spec);
      groups.set(spec.name, group);
      const down = new Set(own(this.#down, spec.name) ?? []);
      // One rotation per pool: its new connections, to whichever target, take turns. Kept
      // across snapshots while the addresses are the same, as the dispatchers holding it are.
      const skeyOf = `${spec.name}\u0000${spec.localAddresses.join(',')}`;
      const sources = sourceSets.get(skeyOf) ?? this.#sources.get(skeyOf) ?? new SourceAddresses(spec.localAddresses);
      sourceSets.set(skeyOf, sources);
      const live = spec.targets.map((t) => {
        const key = dispatcherKey(spec, t);
        let d = dispatchers.get(key) ?? this.#dispatchers.get(key);
        if (!d) {
          d = targetDispatcher(spec, t.origin, sources, {
            connections: spec.connections,
            keepAliveTimeout: spec.keepAliveTimeoutMs,
            keepAliveMaxTimeout: Math.max(spec.keepAliveTimeoutMs, 1000),
            // The route's own headers/idle timeouts are passed per request.
            headersTimeout: 0,
            bodyTimeout: 0,
          });
        }
        dispatchers.set(key, d);
        const skey = stateKey(spec.name, t);
        let state = states.get(skey) ?? this.#states.get(skey);
        if (!state) {
          state = new TargetState(group, t.id, t.url);
          state.up = !down.has(t.id);
        }
        state.drained = t.drain;
        states.set(skey, state);
        return new Target(t, d, state);
      });
      pools.set(spec.name, new Pool(spec.name, live, SELECTORS[spec.selector](spec), sources));
    }
    for (const [key, d] of this.#dispatchers) if (!dispatchers.has(key)) void d.close().catch(() => {});
    for (const [key, s] of this.#states) {
      if (states.has(key)) continue;
      s.dispose();
      if (s.inflight > 0) this.#retired.add(s);
    }
    for (const group of groups.values()) group.members.clear();
    for (const s of states.values()) s.pool.members.add(s);
    for (const s of states.values()) s.usable = s.up && !s.outlier.ejected;
    for (const group of groups.values()) group.recount();
    this.#dispatchers = dispatchers;
    this.#sources = sourceSets;
    this.#states = states;
    this.#groups = groups;
    return pools;
  }

  /** Applies the primary's active-health verdicts to every target state. */
  setDown(down: DownTargets): void {
    this.#down = down;
    const sets = new Map(Object.entries(down).map(([pool, ids]) => [pool, new Set(ids)]));
    for (const s of this.#states.values()) s.setUp(!sets.get(s.pool.name)?.has(s.id));
  }

  /** Counters of the targets the served pools name (no retired ones); no side effect. */
  liveStats(): TargetStats[] {
    const out: TargetStats[] = [];
    for (const s of this.#states.values()) out.push(s.stats(false));
    return out;
  }

  /** Counters of every target this process knows, retired ones until their last attempt ends. */
  stats(): TargetStats[] {
    const out: TargetStats[] = [];
    for (const s of this.#states.values()) out.push(s.stats(false));
    for (const s of this.#retired) {
      out.push(s.stats(true));
      if (s.inflight === 0) this.#retired.delete(s);
    }
    return out;
  }

  /** Graceful: waits for in-flight requests on every dispatcher. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#dispatchers.values()].map((d) => d.close()));
    this.#clear();
  }

  /** Immediate: aborts whatever is still in flight. */
  async destroy(): Promise<void> {
    await Promise.allSettled([...this.#dispatchers.values()].map((d) => d.destroy()));
    this.#clear();
  }

  #clear(): void {
    for (const s of this.#states.values()) s.dispose();
    this.#dispatchers.clear();
    this.#states.clear();
    this.#retired.clear();
  }
}
