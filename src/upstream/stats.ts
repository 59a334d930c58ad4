/**
 * Per-target counters and a latency histogram that can be merged across workers: each worker
 * counts its own traffic, the primary sums the reports (issue 3, `GET /stats/detail`).
 *
 * The histogram has fixed log-scale buckets (8 per doubling, so a quantile is off by at most
 * ~9%) from 10 µs to ~2.5 h; fixed buckets are what makes merging a plain sum.
 */

const PER_DOUBLING = 8;
const MIN_MS = 0.01;
const BUCKETS = 8 * 30;

export class Histogram {
  readonly counts = new Uint32Array(BUCKETS);
  total = 0;

  record(ms: number): void {
    const i = ms <= MIN_MS ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log2(ms / MIN_MS) * PER_DOUBLING));
    this.counts[i]++;
    this.total++;
  }

  /** Non-zero buckets as [index, count] pairs: small enough for IPC. */
  toSparse(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i] !== 0) out.push([i, this.counts[i]]);
    return out;
  }

  add(sparse: ReadonlyArray<readonly [number, number]>): void {
    for (const [i, n] of sparse) {
      this.counts[i] += n;
      this.total += n;
    }
  }

  /** The q-quantile (0..1) in ms, as the geometric middle of its bucket; null when empty. */
  quantile(q: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.round(MIN_MS * 2 ** ((i + 0.5) / PER_DOUBLING) * 100) / 100;
    }
    return null;
  }
}

/** What one process knows about one target; summed across workers by `mergeTargetStats`. */
export interface TargetStats {
  pool: string;
  id: string;
  url: string;
  /** Attempts sent. */
  requests: number;
  /** Attempts that failed because of the target: connect errors, timeouts, invalid answers, 5xx. */
  failures: number;
  /** Attempts the caller gave up on (client gone, a hedge won elsewhere): neither outcome. */
  cancelled: number;
  inflight: number;
  /** Passively ejected in this process right now. */
  ejected: boolean;
  /** Passive ejections so far in this process. */
  ejections: number;
  /** Still counted after removal from the pool, until its in-flight attempts end. */
  retired: boolean;
  /** Time to response headers, sparse histogram. */
  latency: Array<[number, number]>;
}

/** One worker's report (or the single process's). */
export interface WorkerStats {
  /** Version of the config the worker serves (see cluster/messages.ts). */
  version: number;
  downstream: { success: number; failed: number };
  targets: TargetStats[];
}

export interface TargetTotals {
  pool: string;
  id: string;
  url: string;
  requests: number;
  failures: number;
  cancelled: number;
  inflight: number;
  /** Workers that have the target passively ejected now. */
  ejected: number;
  /** Passive ejections so far, summed over workers. */
  ejections: number;
  retired: boolean;
  latency: Histogram;
}

export function mergeTargetStats(reports: readonly WorkerStats[]): Map<string, TargetTotals> {
  const out = new Map<string, TargetTotals>();
  for (const r of reports) {
    for (const t of r.targets) {
      const key = `${t.pool}\u0000${t.id}`;
      let m = out.get(key);
      if (!m) {
        m = {
          pool: t.pool,
          id: t.id,
          url: t.url,
          requests: 0,
          failures: 0,
          cancelled: 0,
          inflight: 0,
          ejected: 0,
          ejections: 0,
          retired: true,
          latency: new Histogram(),
        };
        out.set(key, m);
      }
      m.requests += t.requests;
      m.failures += t.failures;
      m.cancelled += t.cancelled;
      m.inflight += t.inflight;
      if (t.ejected) m.ejected++;
      m.ejections += t.ejections;
      // Live in any worker wins over retired in another.
      m.retired &&= t.retired;
      m.latency.add(t.latency);
    }
  }
  return out;
}
