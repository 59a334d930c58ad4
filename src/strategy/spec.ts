/**
 * A route's `proxy` block → StrategySpec, once at config time (STYLE.md §5): the terminal list
 * becomes a verdict table, durations and sizes numbers, the hedge delay a fixed delay or a
 * percentile. Problems are reported with their key path like every other config problem.
 */
import type { CompileProblem } from '../lib/problem.ts';
import { type Duration, parseDuration, parseSize, type Size } from '../lib/units.ts';
import { Verdicts } from './acceptance.ts';
import type { HedgeDelay, StrategyName, StrategySpec, TargetOrder } from './types.ts';

/**
 * The strategy keys of a route's `proxy` block as validated (config/schema.ts `ProxyConfig`
 * extends it): what compileStrategy reads, so strategy/ need not import config/ (issue 11).
 */
export interface StrategyConfig {
  strategy: StrategyName;
  max_attempts: number;
  order?: TargetOrder;
  width?: number;
  hedge_after: Duration;
  hedge_budget: number;
  hedge_budget_window: Duration;
  terminal: Array<number | string>;
  max_replay_bytes: Size;
  retry_non_idempotent: boolean;
}

export const PERCENTILE_PATTERN = '^p(\\d{1,2}(\\.\\d+)?)$';
const PERCENTILE = new RegExp(PERCENTILE_PATTERN);

function hedgeDelay(value: string | number): HedgeDelay {
  const m = typeof value === 'string' ? PERCENTILE.exec(value) : null;
  return m ? { kind: 'percentile', q: Number(m[1]) } : { kind: 'fixed', ms: parseDuration(value) };
}

export function compileStrategy(
  p: StrategyConfig,
  path: Array<string | number>,
  problems: CompileProblem[],
): StrategySpec {
  const verdicts = Verdicts.compile(p.terminal, (i, message) =>
    problems.push({ path: [...path, 'terminal', i], message }),
  );
  if (p.width !== undefined && p.strategy !== 'fanout') {
    problems.push({ path: [...path, 'width'], message: 'only applies to strategy: fanout' });
  }
  const hedgeAfter = hedgeDelay(p.hedge_after);
  if (hedgeAfter.kind === 'percentile' && !(hedgeAfter.q > 0 && hedgeAfter.q < 100)) {
    problems.push({ path: [...path, 'hedge_after'], message: 'percentile must be between p0 and p100' });
  }
  return Object.freeze({
    name: p.strategy,
    maxAttempts: p.max_attempts,
    width: p.width ?? 0,
    order: p.order ?? (p.strategy === 'failover' ? 'listed' : 'selector'),
    hedgeAfter,
    hedgeBudget: p.hedge_budget,
    hedgeBudgetWindowMs: parseDuration(p.hedge_budget_window),
    verdicts,
    maxReplayBytes: parseSize(p.max_replay_bytes),
    retryNonIdempotent: p.retry_non_idempotent,
  });
}
