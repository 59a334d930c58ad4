import type { Target } from './target.ts';
import type { Selector } from './selectors/types.ts';

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

  /** One target for the next attempt, never one in `tried`; undefined when none is available. */
  pick(tried: ReadonlySet<Target> | null = null): Target | undefined {
    return this.#selector.select(this.targets, tried);
  }
}
