import type { IncomingHttpHeaders } from 'node:http';
import type { Target } from '../target.ts';

/**
 * What a selector may know of the downstream request. A node:http `IncomingMessage` is one,
 * so callers pass the request itself and nothing is allocated per pick.
 */
export interface PickContext {
  readonly headers: IncomingHttpHeaders;
  readonly socket: { readonly remoteAddress?: string | undefined };
}

/**
 * Picks one target among the pool's, skipping those in `tried` and those whose `available()`
 * is false; undefined when none is left. One instance per pool per snapshot, so `targets` is
 * the same array on every call and per-target state may be kept by index.
 */
export interface Selector {
  select(
    targets: readonly Target[],
    ctx: PickContext | null,
    tried: ReadonlySet<Target> | null,
  ): Target | undefined;
}

/** Whether `t` may be picked now. */
export function eligible(t: Target, tried: ReadonlySet<Target> | null): boolean {
  return t.available() && (tried === null || !tried.has(t));
}
