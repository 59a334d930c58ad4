import { SourceAddresses } from './local-addresses.ts';
import type { PickContext, Selector } from './selectors/types.ts';
import type { Target } from './target.ts';

/** A named set of targets plus a selector. Immutable once published in a snapshot. */
export class Pool {
  readonly name: string;
  readonly targets: readonly Target[];
  /**
   * The pool's source-address rotation (`local_addresses`, issue 17 item 3): the same one its
   * HTTP dispatchers connect through, so TCP connections (src/tcp/proxy.ts) take turns with them.
   */
  readonly sources: SourceAddresses;
  readonly #selector: Selector;

  constructor(name: string, targets: readonly Target[], selector: Selector, sources = new SourceAddresses([])) {
    this.name = name;
    this.targets = targets;
    this.#selector = selector;
    this.sources = sources;
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
