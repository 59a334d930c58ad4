/** Selectors registered by name, as in a pool's `selector` key. */
import { Hash } from './hash.ts';
import { LeastInflight } from './least-inflight.ts';
import { Random } from './random.ts';
import type { PoolSpec } from '../spec.ts';
import { RoundRobin } from './round-robin.ts';
import type { Selector } from './types.ts';
import { Weighted } from './weighted.ts';

export const SELECTORS = Object.freeze({
  'round-robin': () => new RoundRobin(),
  weighted: () => new Weighted(),
  'least-inflight': () => new LeastInflight(),
  random: () => new Random(),
  hash: (spec: Pick<PoolSpec, 'hashKey'>) => new Hash(spec.hashKey),
} satisfies Record<string, (spec: Pick<PoolSpec, 'hashKey'>) => Selector>);

export type SelectorName = keyof typeof SELECTORS;
export const SELECTOR_NAMES = Object.keys(SELECTORS) as SelectorName[];
