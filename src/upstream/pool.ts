import type { PickContext, Selector } from './selectors/types.ts';
import type { Target } from './target.ts';

/** A named set of targets plus a selector. Immutable once published in a snapshot. */
export class Pool {
  readonly name: string;
  readonly targets: readonly Target[];
  readonly #selector: Selector;

  constructor(name: string, targets: readonly Target[], selector: Selector) {
    this.name = name;
    this.targets = targets;
    this.#selector = selector;
  }

  /**
   * One target for the next attempt, never one in `tried`; undefined when none is available.
   * `ctx` is the downstream request (a node:http IncomingMessage will do; only the `hash`
   * selector reads it); without it a hash pool picks as for a request without the hash key.
   */
  pick(tried: ReadonlySet<Target> | null = null, ctx: PickContext | null = null): Target | undefined {
    return this.#selector.select(this.targets, ctx, tried);
  }
}
