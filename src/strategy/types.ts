/**
 * Public types of the strategy area (issue #4): how a route spends attempts on the targets of
 * its pool. A strategy is a small function over `Forward` registered by name (index.ts); the
 * bookkeeping every strategy shares (attempt records, losers, the fallback answer, the final
 * error) lives in race.ts so that each policy stays about one screen long (STYLE.md §3).
 */
import type { AbortHook } from '../deadline.ts';
import type { AttemptResult, Forward, OutboundRequest } from '../proxy/forward.ts';
import type { Pool } from '../upstream/pool.ts';
import type { PickContext } from '../upstream/selectors/types.ts';
import type { Verdicts } from './acceptance.ts';

export const STRATEGY_NAMES = Object.freeze(['single', 'failover', 'fanout', 'hedge'] as const);
export type StrategyName = (typeof STRATEGY_NAMES)[number];

/** `listed`: the pool's targets in config order (primary first); `selector`: the pool's selector. */
export const TARGET_ORDERS = Object.freeze(['listed', 'selector'] as const);
export type TargetOrder = (typeof TARGET_ORDERS)[number];

/** When a hedge fires: a fixed delay, or a percentile of the route's recent attempt latency. */
export type HedgeDelay =
  | { readonly kind: 'fixed'; readonly ms: number }
  | { readonly kind: 'percentile'; readonly q: number };

/** A route's strategy settings, compiled once from its `proxy` block (spec.ts, called by config/compile.ts). */
export interface StrategySpec {
  readonly name: StrategyName;
  /** Most attempts for one request (failover, hedge, and connect retries of single). */
  readonly maxAttempts: number;
  /** Targets a fanout sends to at once; 0 = every target of the pool (at most MAX_WIDTH). */
  readonly width: number;
  readonly order: TargetOrder;
  readonly hedgeAfter: HedgeDelay;
  /** Hedges allowed per request over the budget window (0.1 = at most 10% extra attempts). */
  readonly hedgeBudget: number;
  readonly hedgeBudgetWindowMs: number;
  readonly verdicts: Verdicts;
  /** Request bodies up to this size are buffered so that they can be sent again. */
  readonly maxReplayBytes: number;
  readonly retryNonIdempotent: boolean;
}

/** What happened to one attempt; the access log and the 502/504 error body list these. */
export interface AttemptRecord {
  target: string;
  /** Status of the response headers, when the target answered. */
  status?: number;
  /** Catalog code of the failure, when it did not. */
  error?: string;
  /** Human-readable cause of the failure. */
  message?: string;
  /** From the attempt's start to its response headers, failure or cancellation. */
  duration_ms: number;
  /**
   * `accepted`: streamed to the downstream; `relayed`: not accepted but the last answer, so sent;
   * `rejected`: answered with a status the route does not accept; `failed`: no answer;
   * `cancelled`: aborted because another attempt won or the request ended; `pending`: running.
   */
  outcome: 'pending' | 'accepted' | 'relayed' | 'rejected' | 'failed' | 'cancelled';
  /** Set on attempts a hedge timer launched. */
  hedge?: true;
}

/** Everything a strategy needs for one request; built by the pipeline, read-only here. */
export interface StrategyRun {
  readonly routeId: string;
  readonly pool: Pool;
  /** The downstream request, for selectors that pick by it (`hash`). */
  readonly pickContext: PickContext | null;
  readonly spec: StrategySpec;
  /** The request; its body is `null`, a Buffer (replayable) or a stream (one attempt only). */
  readonly request: OutboundRequest;
  readonly forward: Forward;
  /** The route's one deadline: client close ∪ route timeout. Every attempt fits inside it. */
  readonly signal: AbortHook;
  /** The body can be sent again (none, or buffered within `max_replay_bytes`). */
  readonly replayable: boolean;
  /** RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE. */
  readonly idempotent: boolean;
  /** Attempt records are appended here (the RequestContext's list). */
  readonly attempts: AttemptRecord[];
}

/** Resolves with the answer to stream (accepted, or the last one relayed) or throws a GatewayError. */
export type Strategy = (run: StrategyRun) => Promise<AttemptResult>;
