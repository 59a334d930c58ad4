/**
 * `fanout`: the request goes to `width` targets (default: all of the pool) at once; the first
 * accepted answer is streamed and every other attempt is aborted at once, its connection
 * destroyed, so nothing leaks and the targets stop working for nobody. Fan-out is the route's
 * explicit consent to send a non-idempotent request more than once. One wave only: when no
 * answer is accepted the last one is relayed (or a 502/504 lists every attempt).
 */
import type { AttemptResult } from '../proxy/forward.ts';
import { Race } from './race.ts';
import type { StrategyRun } from './types.ts';

/** Upper bound of `width` (STYLE.md §10): one request never opens more attempts than this. */
export const MAX_WIDTH = 32;

export async function fanout(run: StrategyRun): Promise<AttemptResult> {
  const race = new Race(run, true);
  const width = Math.min(run.spec.width || run.pool.targets.length, MAX_WIDTH);
  for (let i = 0; i < width; i++) {
    const target = race.pickNext();
    if (target === undefined) break;
    race.launch(target);
  }
  while (race.busy) {
    const o = (await race.next())!;
    if (o.kind === 'answer' && o.accepted) return race.win(o);
  }
  return race.finish();
}
