/**
 * `single`: one attempt, whatever its status. Only a failure to connect, which provably sent
 * nothing, is tried again on another target, up to `max_attempts`, and only when the body can
 * be sent again (none or buffered).
 *
 * The first attempt is the fast path of every proxied request (issue 11 item 4): its answer is
 * taken straight from forward's promise (`race.attempt` hands it on in the same step), with no
 * async frame, queue or wake-up promise; the retry loop runs only after a failure.
 */
import type { AttemptResult } from '../proxy/forward.ts';
import { type Outcome, Race } from './race.ts';
import type { StrategyRun } from './types.ts';

export function single(run: StrategyRun): Promise<AttemptResult> {
  const race = new Race(run, false);
  const target = race.pickNext();
  if (target === undefined) return finished(race);
  return race.attempt(target, (o) => (o !== null && o.kind === 'answer' ? race.win(o) : retry(race, run, o)));
}

/** After a first attempt that did not answer: connect failures are tried again on another target. */
async function retry(race: Race, run: StrategyRun, first: Outcome | null): Promise<AttemptResult> {
  let o = first;
  while (o !== null) {
    if (o.kind === 'answer') return race.win(o);
    const connectFailure = (o.error as { phase?: string }).phase === 'connect';
    if (!connectFailure || !race.mayRetry(o, false) || race.count >= run.spec.maxAttempts) break;
    const target = race.pickNext();
    if (target === undefined) break;
    // One attempt at a time: its outcome straight from forward's promise (race.attempt).
    o = await race.attempt(target, (next) => next);
  }
  return race.finish();
}

/** `race.finish()` as a promise: the relayed fallback, or its error as a rejection. */
function finished(race: Race): Promise<AttemptResult> {
  try {
    return Promise.resolve(race.finish());
  } catch (err) {
    return Promise.reject(err as Error);
  }
}
