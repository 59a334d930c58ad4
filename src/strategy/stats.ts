/**
 * Strategy counters, per route id (issue #4 point 5), read at scrape time as
 * `manifold_retries_total` and `manifold_hedges_*_total`. Attempts themselves, and how each
 * ended (`cancelled` among them), are counted in one place only: from the request's attempt
 * records, as `manifold_attempts_total` (issue 11). Route ids come from the config only, so the
 * map is bounded by it (STYLE.md §10). Counts are per process: in cluster mode each worker has its own.
 */

export interface StrategyCounters {
  /** Attempts sent after an earlier one failed or was not accepted. */
  retries: number;
  /** Attempts a hedge timer launched. */
  hedgesFired: number;
  /** Hedges whose answer was the one streamed downstream. */
  hedgesWon: number;
  /** Hedge timers that fired but found the budget spent. */
  hedgesDenied: number;
}

const byRoute = new Map<string, StrategyCounters>();

/** The live counters of one route (created on first use). */
export function countersFor(routeId: string): StrategyCounters {
  let c = byRoute.get(routeId);
  if (c === undefined) {
    c = { retries: 0, hedgesFired: 0, hedgesWon: 0, hedgesDenied: 0 };
    byRoute.set(routeId, c);
  }
  return c;
}

/** A copy of every route's counters. */
export function strategyStats(): Record<string, StrategyCounters> {
  const out: Record<string, StrategyCounters> = {};
  for (const [id, c] of byRoute) out[id] = { ...c };
  return out;
}
