import type { Target } from '../target.ts';
import { randomEligible } from './random.ts';
import type { PickContext, Selector } from './types.ts';

/**
 * Power of two choices: two random eligible targets, the one with fewer attempts in flight
 * wins. Nearly as good as scanning for the minimum, without herding every process onto the
 * same momentarily idle target (Mitzenmacher 2001; Envoy LEAST_REQUEST). In-flight counts are
 * per process.
 */
export class LeastInflight implements Selector {
  select(targets: readonly Target[], _ctx: PickContext | null, tried: ReadonlySet<Target> | null) {
    const a = randomEligible(targets, tried);
    if (a === undefined) return undefined;
    const b = randomEligible(targets, tried, a);
    if (b === undefined) return a;
    if (a.inflight === b.inflight) return Math.random() < 0.5 ? a : b;
    return a.inflight < b.inflight ? a : b;
  }
}
