/**
 * `single`: one attempt, whatever its status. Only a failure to connect, which provably sent
 * nothing, is tried again on another target, up to `max_attempts`, and only when the body can
 * be sent again (none or buffered).
 */
import type { AttemptResult } from '../proxy/forward.ts';
import { Race } from './race.ts';
import type { StrategyRun } from './types.ts';

export async function single(run: StrategyRun): Promise<AttemptResult> {
  const race = new Race(run, false);
  let target = race.pickNext();
  while (target !== undefined) {
    // One attempt at a time: its outcome straight from forward's promise (race.attempt).
    const o = await race.attempt(target);
    if (o === null) break;
    if (o.kind === 'answer') return race.win(o);
    const connectFailure = (o.error as { phase?: string }).phase === 'connect';
    if (!connectFailure || !race.mayRetry(o, false) || race.count >= run.spec.maxAttempts) break;
    target = race.pickNext();
  }
  return race.finish();
}
