/**
 * A compiled route as every action has it: id, matcher, limits, and an action `A` that the
 * feature handling it names. config/compile.ts builds `Route<RouteAction>` (CompiledRoute);
 * a feature that reads routes takes `Route<ItsAction>` (defer: `Route<DeferAction>`) or a
 * plain `Route` list it filters with a guard, so features need not import config/ (issue 11).
 */
import type { Forwarding } from '../proxy/headers.ts';
import type { Matcher } from './matcher.ts';

export interface RouteActionBase {
  readonly kind: string;
}

export interface Route<A extends RouteActionBase = RouteActionBase> {
  id: string;
  index: number;
  matches: Matcher;
  /** The listeners `match.listener` names; null = any (a redirect listener serves only named routes). */
  listeners: ReadonlySet<string> | null;
  action: A;
  /** 0 = no overall deadline. */
  timeoutMs: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  /** null = unlimited (streamed). */
  maxBodyBytes: number | null;
  /** An upgraded tunnel with no byte either way for this long is closed; 0 = never (issue 15). */
  tunnelIdleTimeoutMs: number;
  /** The top-level `forwarding` settings (Via pseudonym, loop limit, Forwarded), shared by every route. */
  forwarding: Forwarding;
}
