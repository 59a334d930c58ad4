/**
 * A target: one upstream server, with the undici dispatcher that holds its keep-alive
 * connections. Selectors read only `available()` (STYLE.md §4); health state lives here.
 */
import type { Dispatcher } from 'undici';
import type { TargetSpec } from '../config/compile.ts';

export class Target {
  readonly id: string;
  readonly spec: TargetSpec;
  readonly dispatcher: Dispatcher;
  /** Attempts currently in flight on this target (in this process). */
  inflight = 0;

  constructor(spec: TargetSpec, dispatcher: Dispatcher) {
    this.id = spec.id;
    this.spec = spec;
    this.dispatcher = dispatcher;
  }

  /** Whether a selector may pick this target. */
  available(): boolean {
    return true;
  }
}
