import type { Target } from '../target.ts';
import { eligible, type PickContext, type Selector } from './types.ts';

/**
 * Each call starts one past the previous first pick and takes the first eligible target. Only
 * a request's first pick (nothing `tried` yet) moves the cursor (issue 15, item 5): a hedge or
 * retry takes the next eligible target after it without moving it, so with two targets and
 * every request hedged, first attempts still alternate instead of all going to one target.
 */
export class RoundRobin implements Selector {
  #next = 0;

  select(targets: readonly Target[], _ctx: PickContext | null, tried: ReadonlySet<Target> | null) {
    const n = targets.length;
    const first = tried === null || tried.size === 0;
    for (let i = 0; i < n; i++) {
      const t = targets[(this.#next + i) % n];
      if (eligible(t, tried)) {
        if (first) this.#next = (this.#next + i + 1) % n;
        return t;
      }
    }
    return undefined;
  }
}
