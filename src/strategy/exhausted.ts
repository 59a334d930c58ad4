/**
 * A route's `exhausted` answer (issue 13): when no attempt is accepted, answer this status and
 * body instead of relaying the last answer or a 502/504. balancing-reverse-proxy answers a
 * bare 500 then, and its users' clients test for it; Manifold's own rule (relay what the last
 * target said) stays the default because it says more.
 */
import { GatewayError, isGatewayError } from '../errors.ts';
import type { AttemptResult } from '../proxy/forward.ts';
import type { Verdicts } from './acceptance.ts';
import type { AttemptRecord } from './types.ts';

/** The access log's `error` of a request that got the exhausted answer. */
export const EXHAUSTED_CODE = 'NO_ACCEPTED_ANSWER';

export interface ExhaustedAnswer {
  readonly status: number;
  readonly body: Buffer;
}

/**
 * For a route with an exhausted answer: the strategy's answer when it was accepted; null when
 * the exhausted answer is due instead (the relayed answer is then aborted). Client-side
 * failures (413, 499, …) are no target's fault and go on as errors.
 */
export async function unlessExhausted(
  outcome: Promise<AttemptResult>,
  verdicts: Verdicts,
  attempts: AttemptRecord[],
): Promise<AttemptResult | null> {
  let result: AttemptResult;
  try {
    result = await outcome;
  } catch (err) {
    if (isGatewayError(err) && err.status >= 500) return null;
    throw err;
  }
  if (verdicts.accepts(result.status)) return result;
  for (const a of attempts) if (a.outcome === 'relayed') a.outcome = 'rejected';
  result.abort(new GatewayError('ATTEMPT_CANCELLED', 'replaced by the route\'s exhausted answer'));
  return null;
}
