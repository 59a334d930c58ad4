/**
 * `failover`: targets one after another (by default in the order the pool lists them, primary
 * first), the next only once the previous has answered or failed, never two in flight: for
 * per-call-paid APIs a later target is not called before the earlier one has had its say.
 * Stops at the first accepted answer, at `max_attempts`, when the pool has no untried target,
 * or when retrying is not safe (STYLE.md §7); then the last answer is relayed if there was one.
 */
import type { AttemptResult } from '../proxy/forward.ts';
import { Race } from './race.ts';
import type { StrategyRun } from './types.ts';

export async function failover(run: StrategyRun): Promise<AttemptResult> {
  const race = new Race(run, true);
  let target = race.pickNext();
  while (target !== undefined) {
    race.launch(target);
    const o = (await race.next())!;
    if (o.kind === 'answer' && o.accepted) return race.win(o);
    if (!race.mayRetry(o, run.spec.retryNonIdempotent) || race.count >= run.spec.maxAttempts) break;
    target = race.pickNext();
  }
  return race.finish();
}
