/**
 * The immutable runtime view a request reads once (STYLE.md §6): compiled routes plus the live
 * pools they name. Built fully before it is published, then swapped by one assignment.
 */
import type { CompiledConfig, CompiledRoute } from '../config/compile.ts';
import type { Pool } from '../upstream/pool.ts';
import type { Registry } from '../upstream/registry.ts';

export interface Snapshot {
  readonly routes: readonly CompiledRoute[];
  readonly pools: ReadonlyMap<string, Pool>;
  readonly accessLog: boolean;
}

export function buildSnapshot(compiled: CompiledConfig, registry: Registry, accessLog: boolean): Snapshot {
  const pools = registry.provision(compiled.pools);
  return Object.freeze({ routes: Object.freeze([...compiled.routes]), pools, accessLog });
}
