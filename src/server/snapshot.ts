/**
 * The immutable runtime view a request reads once (STYLE.md §6): compiled routes plus the live
 * pools they name. Built fully before it is published, then swapped by one assignment.
 */
import type { CompiledConfig, CompiledRoute } from '../config/compile.ts';
import type { TracingConfig } from '../observability/trace.ts';
import type { MultiplexLease, MultiplexRegistry } from '../multiplex/registry.ts';
import type { Pool } from '../upstream/pool.ts';
import type { Registry } from '../upstream/registry.ts';
import type { TcpSpec } from '../tcp/spec.ts';

export interface Snapshot {
  readonly routes: readonly CompiledRoute[];
  readonly pools: ReadonlyMap<string, Pool>;
  /** The live batch handler of each multiplex route, by route id (issue 5). */
  readonly multiplex: ReadonlyMap<string, MultiplexLease>;
  /** Issue 17: each `mode: tcp` listener's compiled `tcp` block, by listener name. */
  readonly tcp: ReadonlyMap<string, TcpSpec>;
  readonly accessLog: boolean;
  /** W3C trace context on what is sent (issue 7); null = off. */
  readonly tracing: Readonly<TracingConfig> | null;
}

export function buildSnapshot(
  compiled: CompiledConfig,
  registry: Registry,
  accessLog: boolean,
  batches: MultiplexRegistry,
  tracing: TracingConfig | null = null,
): Snapshot {
  const pools = registry.provision(compiled.pools);
  const multiplex = batches.provision(compiled.routes);
  return Object.freeze({
    routes: Object.freeze([...compiled.routes]),
    pools,
    multiplex,
    tcp: compiled.tcp,
    accessLog,
    tracing: tracing?.enabled ? Object.freeze({ ...tracing }) : null,
  });
}
