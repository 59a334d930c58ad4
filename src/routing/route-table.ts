/** First match wins, in config order. */
import type { MatchInput } from './matcher.ts';

export interface Matchable {
  matches: (input: MatchInput) => boolean;
}

export function findRoute<R extends Matchable>(routes: readonly R[], input: MatchInput): R | undefined {
  for (let i = 0; i < routes.length; i++) if (routes[i].matches(input)) return routes[i];
  return undefined;
}
