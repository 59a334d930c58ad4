/**
 * A target: one upstream server, with the undici dispatcher that holds its keep-alive
 * connections. Selectors read only `available()` (STYLE.md §4); health and counters live in
 * the target's state (state.ts), which outlives the snapshot this object belongs to.
 */
import type { Dispatcher } from 'undici';
import type { TargetSpec } from './spec.ts';
import type { TargetState } from './state.ts';

export class Target {
  readonly id: string;
  readonly spec: TargetSpec;
  readonly dispatcher: Dispatcher;
  readonly state: TargetState;

  constructor(spec: TargetSpec, dispatcher: Dispatcher, state: TargetState) {
    this.id = spec.id;
    this.spec = spec;
    this.dispatcher = dispatcher;
    this.state = state;
  }

  /** Attempts currently in flight on this target (in this process, across snapshots). */
  get inflight(): number {
    return this.state.inflight;
  }

  set inflight(n: number) {
    this.state.inflight = n;
  }

  /**
   * Whether a selector may pick this target: not drained by an operator, and actively up and
   * not passively ejected — or its pool is in panic (too few usable targets), where trying
   * every target beats a 503 for all. Panic never brings back a drained target: draining is
   * an order, not a symptom.
   */
  available(): boolean {
    return !this.spec.drain && (this.state.usable || this.state.pool.panic);
  }
}
