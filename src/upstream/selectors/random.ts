import type { Target } from '../target.ts';
import { eligible, type PickContext, type Selector } from './types.ts';

/** A uniformly random start, then the first eligible target from there. */
export function randomEligible(targets: readonly Target[], tried: ReadonlySet<Target> | null, skip?: Target) {
  const n = targets.length;
  const start = Math.floor(Math.random() * n);
  for (let i = 0; i < n; i++) {
    const t = targets[(start + i) % n];
    if (t !== skip && eligible(t, tried)) return t;
  }
  return undefined;
}

export class Random implements Selector {
  select(targets: readonly Target[], _ctx: PickContext | null, tried: ReadonlySet<Target> | null) {
    return randomEligible(targets, tried);
  }
}
