/**
 * `recordOutcomes`: the ForwardWrapper that tells each target's state how its attempts went,
 * feeding both the stats (`GET /stats/detail`) and passive health (health/passive.ts).
 * Measured at response headers, which is when an attempt's verdict is known.
 */
import { performance } from 'node:perf_hooks';
import { isGatewayError } from '../errors.ts';
import type { AttemptResult, ForwardWrapper } from './forward.ts';

/** Errors a target is to blame for. A client cancel (499) or a losing hedge never is. */
const TARGET_FAULTS = new Set(['TARGET_UNREACHABLE', 'TARGET_TIMEOUT', 'TARGET_PROTOCOL']);

export const recordOutcomes: ForwardWrapper = (next) => (target, request, signal) => {
  const started = performance.now();
  const state = target.state;
  return next(target, request, signal).then(
    (result: AttemptResult) => {
      const ms = performance.now() - started;
      if (result.status >= 500) state.failed(ms);
      else state.succeeded(ms);
      return result;
    },
    (err: unknown) => {
      const code = isGatewayError(err) ? err.code : '';
      // An attempt aborted by the caller counts against the target only when the reason was
      // its own slowness (a deadline), not a client gone or a hedge won elsewhere.
      const reason = signal.aborted && isGatewayError(signal.reason) ? signal.reason.code : null;
      const blamed = signal.aborted ? reason === 'TARGET_TIMEOUT' : TARGET_FAULTS.has(code);
      if (blamed) state.failed(null);
      else state.cancel();
      throw err;
    },
  );
};
