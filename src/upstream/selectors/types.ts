import type { Target } from '../target.ts';

/** Picks one target among the pool's, skipping those in `tried`; undefined when none is left. */
export interface Selector {
  select(targets: readonly Target[], tried: ReadonlySet<Target> | null): Target | undefined;
}
