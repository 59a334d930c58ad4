/**
 * Strategies registered by name, as in the route's `strategy` key, and the one entry point
 * the pipeline calls. A request whose body cannot be sent again (larger than
 * `max_replay_bytes`, or streamed) runs as `single` whatever the route says: a partly consumed
 * stream is never retried.
 */
import type { AttemptResult } from '../proxy/forward.ts';
import { failover } from './failover.ts';
import { fanout } from './fanout.ts';
import { hedge } from './hedge.ts';
import { single } from './single.ts';
import type { Strategy, StrategyName, StrategyRun } from './types.ts';

export const STRATEGIES: Readonly<Record<StrategyName, Strategy>> = Object.freeze({
  single,
  failover,
  fanout,
  hedge,
});

export function runStrategy(run: StrategyRun): Promise<AttemptResult> {
  return (run.replayable ? STRATEGIES[run.spec.name] : single)(run);
}

/**
 * Upgrades (WebSocket) run as `single` whatever the route's strategy: a tunnel is one
 * connection, so fanout or hedge would open several. A connect failure, which sent nothing,
 * is tried again on another target up to `max_attempts` (issue 11).
 */
export function runUpgrade(run: StrategyRun): Promise<AttemptResult> {
  return single(run);
}

/** RFC 9110 §9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}
