/**
 * `hedge`: one attempt; when no accepted answer has come `hedge_after` later (a duration, or a
 * percentile of the route's recent attempt latency), another attempt goes to a different
 * target, and so on up to `max_attempts`. The first accepted answer wins; the rest are aborted.
 * A failure or a rejected answer launches the next attempt at once (a retry, not a hedge).
 *
 * Hedges are spent from a budget (budget.ts) so that a slow target cannot double the load; a
 * percentile delay fires nothing until the window has MIN_SAMPLES. A request that may not be
 * sent twice (non-idempotent without `retry_non_idempotent`, or a body too large to replay) is
 * never hedged: it gets the connect-failure retries of `single`.
 */
import { performance } from 'node:perf_hooks';
import type { AttemptResult } from '../proxy/forward.ts';
import { HedgeBudget } from './budget.ts';
import { LatencyWindow } from './latency.ts';
import { Race } from './race.ts';
import type { StrategyRun, StrategySpec } from './types.ts';

interface HedgeState {
  latency: LatencyWindow;
  budget: HedgeBudget;
}

/**
 * Per compiled route: a config reload starts a fresh window and budget (the old spec, and its
 * state, go away with the old snapshot).
 */
const states = new WeakMap<StrategySpec, HedgeState>();

function stateOf(spec: StrategySpec): HedgeState {
  let s = states.get(spec);
  if (s === undefined) {
    s = { latency: new LatencyWindow(), budget: new HedgeBudget(spec.hedgeBudget, spec.hedgeBudgetWindowMs) };
    states.set(spec, s);
  }
  return s;
}

/** The current hedge delay of a route, or null when there is no history yet. */
export function hedgeDelay(spec: StrategySpec): number | null {
  const d = spec.hedgeAfter;
  return d.kind === 'fixed' ? d.ms : stateOf(spec).latency.percentile(d.q);
}

export async function hedge(run: StrategyRun): Promise<AttemptResult> {
  const { spec } = run;
  const state = stateOf(spec);
  const race = new Race(run, true);
  if (spec.hedgeAfter.kind === 'percentile') race.onLatency = (ms) => state.latency.add(ms);
  let hedging = run.replayable && (run.idempotent || spec.retryNonIdempotent);
  if (hedging) state.budget.request(performance.now());
  const first = race.pickNext();
  if (first !== undefined) race.launch(first);
  while (race.busy) {
    let wait: number | undefined;
    if (hedging && race.count < spec.maxAttempts) {
      const delay = hedgeDelay(spec);
      if (delay === null) hedging = false;
      else wait = race.lastLaunchAt + delay - performance.now();
    }
    const o = await race.next(wait);
    if (o === null) {
      // The budget first, then the pick (issue 15): a pick moves the selector's state (the
      // round-robin cursor), so a target is picked only for a hedge that will be sent.
      const now = performance.now();
      if (!state.budget.allows(now)) {
        race.counters.hedgesDenied++;
        hedging = false;
        continue;
      }
      const target = race.pickNext();
      if (target === undefined) hedging = false;
      else {
        state.budget.tryHedge(now);
        race.counters.hedgesFired++;
        race.launch(target, true);
      }
      continue;
    }
    if (o.kind === 'answer' && o.accepted) {
      if (o.attempt.hedge) race.counters.hedgesWon++;
      return race.win(o);
    }
    if (race.mayRetry(o, spec.retryNonIdempotent) && race.count < spec.maxAttempts) {
      const target = race.pickNext();
      if (target !== undefined) race.launch(target);
    }
  }
  return race.finish();
}
