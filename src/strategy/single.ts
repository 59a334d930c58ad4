/**
 * `single`: one attempt. Only a failure to connect, which provably sent nothing, is tried
 * once more on another target, and only when the body can be sent again (none or buffered).
 */
import { AttemptError, type AttemptResult, type Forward, type OutboundRequest } from '../proxy/forward.ts';
import { GatewayError } from '../errors.ts';
import type { Pool } from '../upstream/pool.ts';
import type { Target } from '../upstream/target.ts';

export async function runSingle(
  pool: Pool,
  request: OutboundRequest,
  forward: Forward,
  signal: AbortSignal,
): Promise<AttemptResult> {
  const first = pool.pick();
  if (first === undefined)
    throw new GatewayError('NO_TARGET_AVAILABLE', `no target is available in pool "${pool.name}"`);
  try {
    return await forward(first, request, signal);
  } catch (err) {
    const replayable = request.body === null || Buffer.isBuffer(request.body);
    if (!(err instanceof AttemptError) || err.phase !== 'connect' || !replayable || signal.aborted) throw err;
    const second = pool.pick(new Set<Target>([first]));
    if (second === undefined) throw err;
    return forward(second, request, signal);
  }
}
