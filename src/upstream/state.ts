/**
 * Live health and counters of the targets in one process. Unlike pools (rebuilt for every
 * snapshot), these outlive snapshots: a target keeps its state, keyed by pool, id and URL, for
 * as long as a snapshot names it, and a little longer while attempts to it are still in flight
 * (so a drained target's last requests are still counted).
 *
 * What a selector sees is `Target.available()` = `state.usable || pool.panic` (STYLE.md §4).
 */
import { Outlier } from './health/passive.ts';
import type { PassiveSpec, PoolSpec } from './spec.ts';
import { Histogram, type TargetStats } from './stats.ts';

/** The shared health view of one pool's targets in this process. */
export class PoolHealth {
  readonly name: string;
  /** Percent of targets that must be usable; below it every target is used (panic mode). */
  panicThreshold = 50;
  passive: PassiveSpec | null = null;
  readonly members = new Set<TargetState>();
  /** True while too few targets are usable: selectors then see every target as available. */
  panic = false;
  /** Targets passively ejected now. */
  ejected = 0;

  constructor(name: string) {
    this.name = name;
  }

  configure(spec: PoolSpec): void {
    this.panicThreshold = spec.panicThreshold;
    this.passive = spec.passive;
  }

  /** Whether one more target may be ejected without passing the pool's cap. */
  mayEject(): boolean {
    const p = this.passive;
    if (p === null) return false;
    // One ejection is always allowed (as Envoy does), or a 10% cap would never eject in small pools.
    return this.ejected === 0 || (this.ejected + 1) * 100 <= p.maxEjectedPercent * this.members.size;
  }

  recount(): void {
    let usable = 0;
    let ejected = 0;
    let total = 0;
    for (const m of this.members) {
      if (m.outlier.ejected) ejected++;
      // A drained target is out by choice: it counts neither for nor against panic.
      if (m.drained) continue;
      total++;
      if (m.usable) usable++;
    }
    this.ejected = ejected;
    this.panic = total > 0 && usable * 100 < this.panicThreshold * total;
  }
}

export class TargetState {
  readonly pool: PoolHealth;
  readonly id: string;
  readonly url: string;
  /** Active health (decided by the primary's checks); a new target starts up. */
  up = true;
  /** `up` and not passively ejected. */
  usable = true;
  /** Drained by an operator (the target's config says so; set by the registry per snapshot). */
  drained = false;
  inflight = 0;
  requests = 0;
  failures = 0;
  cancelled = 0;
  readonly latency = new Histogram();
  readonly outlier: Outlier;

  constructor(pool: PoolHealth, id: string, url: string) {
    this.pool = pool;
    this.id = id;
    this.url = url;
    this.outlier = new Outlier(this);
  }

  setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    this.refresh();
  }

  /** Recomputes `usable` and the pool's panic flag after a health change. */
  refresh(): void {
    this.usable = this.up && !this.outlier.ejected;
    this.pool.recount();
  }

  /** An attempt got an answer the target is not to blame for (below 500). */
  succeeded(ms: number): void {
    this.requests++;
    this.latency.record(ms);
    this.outlier.success();
  }

  /** An attempt failed because of the target (connect error, timeout, 5xx…). */
  failed(ms: number | null): void {
    this.requests++;
    this.failures++;
    if (ms !== null) this.latency.record(ms);
    this.outlier.failure();
  }

  /** An attempt the caller gave up on (client gone, a losing hedge): counted, never blamed. */
  cancel(): void {
    this.requests++;
    this.cancelled++;
  }

  stats(retired: boolean): TargetStats {
    return {
      pool: this.pool.name,
      id: this.id,
      url: this.url,
      requests: this.requests,
      failures: this.failures,
      cancelled: this.cancelled,
      inflight: this.inflight,
      ejected: this.outlier.ejected,
      ejections: this.outlier.total,
      retired,
      latency: this.latency.toSparse(),
    };
  }

  dispose(): void {
    this.outlier.dispose();
  }
}
