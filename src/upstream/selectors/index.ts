/** Selectors registered by name, as in the config's `selector` key. */
import { RoundRobin } from './round-robin.ts';
import type { Selector } from './types.ts';

export const SELECTORS: Readonly<Record<string, () => Selector>> = Object.freeze({
  'round-robin': () => new RoundRobin(),
});
