import type { Target } from '../target.ts';
import { eligible, type PickContext, type Selector } from './types.ts';

/**
 * Smooth weighted round-robin (nginx `ngx_http_upstream_get_peer`): every eligible target
 * gains its weight, the highest total is picked and pays back the sum of weights. Weights
 * 5,1,1 give a a b a c a a — spread out, not bursts of five.
 */
export class Weighted implements Selector {
  #current: number[] = [];

  select(targets: readonly Target[], _ctx: PickContext | null, tried: ReadonlySet<Target> | null) {
    const current = this.#current;
    let best = -1;
    let total = 0;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i];
      if (!eligible(t, tried)) continue;
      const w = t.spec.weight;
      current[i] = (current[i] ?? 0) + w;
      total += w;
      if (best === -1 || current[i] > current[best]) best = i;
    }
    if (best === -1) return undefined;
    current[best] -= total;
    return targets[best];
  }
}
