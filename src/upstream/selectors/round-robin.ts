import type { Target } from '../target.ts';
import type { Selector } from './types.ts';

/** Each call starts one past the previous pick and takes the first available, untried target. */
export class RoundRobin implements Selector {
  #next = 0;

  select(targets: readonly Target[], tried: ReadonlySet<Target> | null): Target | undefined {
    const n = targets.length;
    for (let i = 0; i < n; i++) {
      const t = targets[(this.#next + i) % n];
      if (t.available() && (tried === null || !tried.has(t))) {
        this.#next = (this.#next + i + 1) % n;
        return t;
      }
    }
    return undefined;
  }
}
