import type { Target } from '../target.ts';
import { eligible, type PickContext, type Selector } from './types.ts';

/** Each call starts one past the previous pick and takes the first eligible target. */
export class RoundRobin implements Selector {
  #next = 0;

  select(targets: readonly Target[], _ctx: PickContext | null, tried: ReadonlySet<Target> | null) {
    const n = targets.length;
    for (let i = 0; i < n; i++) {
      const t = targets[(this.#next + i) % n];
      if (eligible(t, tried)) {
        this.#next = (this.#next + i + 1) % n;
        return t;
      }
    }
    return undefined;
  }
}
