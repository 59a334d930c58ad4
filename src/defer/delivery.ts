/**
 * One delivery of one job: the stored request is sent to a target of the route's pool through
 * the one strategy runner and the same `forward` as proxy routes (so selectors, passive health,
 * target counters and attempt records see it), and classified at response-headers time by the
 * route's `success` list. Used by the deliverers and by the direct deliveries of overflow mode.
 *
 * It runs as `single` (issue 11 item 2): a failure to connect, which sent nothing, is tried on
 * another target, up to DELIVERY_TRIES targets within the same delivery; any other failure, and
 * any answer, is the delivery's result, and the job's retry schedule decides what happens next.
 * The outbound request is prepared once per delivery; an attempt adds only what depends on its
 * target: the path under the target's prefix, Host, and a new span id.
 */
import type { AbortHook } from '../deadline.ts';
import { isGatewayError } from '../errors.ts';
import type { AttemptError, AttemptResult, BodySink, Forward, OutboundRequest } from '../proxy/forward.ts';
import { parseTraceparent, TRACEPARENT } from '../observability/trace.ts';
import { AttemptHeaders, type HostMode, preparedForward } from '../proxy/headers.ts';
import type { Route } from '../routing/route.ts';
import { Verdicts } from '../strategy/acceptance.ts';
import { isIdempotent, runStrategy } from '../strategy/index.ts';
import type { AttemptRecord, StrategySpec } from '../strategy/types.ts';
import type { Pool } from '../upstream/pool.ts';
import type { HeaderPairs } from './queue.ts';
import type { DeferSpec } from './spec.ts';

/** Headers every delivery carries, so a receiver can de-duplicate (delivery is at least once). */
export const JOB_ID_HEADER = 'x-manifold-job-id';
export const ATTEMPT_HEADER = 'x-manifold-attempt';

/** How much of a refused answer's body is kept for the job's `lastError`. */
const ERROR_BODY_BYTES = 512;
/** Targets tried in one delivery when connecting fails (nothing sent). */
const DELIVERY_TRIES = 3;

export interface DeliveryRequest {
  id: string;
  /** 1 for the first queued attempt; 0 for the direct delivery of overflow mode. */
  attempt: number;
  method: string;
  url: string;
  headers: Readonly<HeaderPairs> | ReadonlyArray<readonly [string, string]>;
  body: Buffer;
}

export type DeliveryOutcome =
  | { ok: true; status: number; target: string }
  | { ok: false; status: number | null; target: string | null; code: string; error: string };

/** Collects (a bounded prefix of) a response body; resolves when it ends, rejects if it fails. */
class DrainSink implements BodySink {
  readonly #keep: number;
  readonly #chunks: Buffer[] = [];
  #kept = 0;
  readonly done: Promise<Buffer>;
  #resolve!: (b: Buffer) => void;
  #reject!: (e: Error) => void;

  constructor(keep: number) {
    this.#keep = keep;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }
  write(chunk: Buffer): boolean {
    if (this.#kept < this.#keep) {
      const part = chunk.subarray(0, this.#keep - this.#kept);
      this.#chunks.push(part);
      this.#kept += part.length;
    }
    return true;
  }
  end(): void {
    this.#resolve(Buffer.concat(this.#chunks, this.#kept));
  }
  error(err: AttemptError): void {
    this.#reject(err);
  }
  onDrain(): void {}
}

/**
 * How a delivery spends its attempts, per compiled `defer` spec: `single` over the pool's
 * selector, at most DELIVERY_TRIES connect tries, the `success` table as the verdict. Made on
 * the first delivery of a spec (a snapshot's specs are immutable) and kept with it.
 */
const strategies = new WeakMap<DeferSpec, StrategySpec>();

function strategyOf(spec: DeferSpec): StrategySpec {
  let s = strategies.get(spec);
  if (s === undefined) {
    s = Object.freeze<StrategySpec>({
      name: 'single',
      maxAttempts: DELIVERY_TRIES,
      width: 0,
      order: 'selector',
      hedgeAfter: { kind: 'fixed', ms: 0 },
      hedgeBudget: 0,
      hedgeBudgetWindowMs: 0,
      verdicts: new Verdicts(spec.success),
      // The stored body is whole: every attempt can send it again.
      maxReplayBytes: Number.POSITIVE_INFINITY,
      retryNonIdempotent: false,
    });
    strategies.set(spec, s);
  }
  return s;
}

/**
 * The stored headers made ready for every attempt of one delivery, once: the job headers
 * appended; under a `host` mode other than `preserve` the first Host is the target's (one is
 * added when none was stored, the others are dropped); with tracing, a stored valid
 * `traceparent` gets a new span id per attempt (each delivery is a span of the request's trace,
 * issue 7).
 */
function prepareHeaders(req: DeliveryRequest, mode: HostMode, tracing: boolean): AttemptHeaders {
  const out = new AttemptHeaders(mode);
  let hostSeen = false;
  for (const [name, value] of req.headers) {
    if (out.overridesHost && name.length === 4 && name.toLowerCase() === 'host') {
      if (!hostSeen) out.pushHost(name, value);
      hostSeen = true;
      continue;
    }
    const trace = tracing && name.length === 11 && name.toLowerCase() === TRACEPARENT ? parseTraceparent(value) : null;
    if (trace !== null) out.pushSpan(name, trace);
    else out.push(name, value);
  }
  if (out.overridesHost && !hostSeen) out.pushHost('host', '');
  out.push(JOB_ID_HEADER, req.id);
  out.push(ATTEMPT_HEADER, String(req.attempt));
  return out;
}

/** A failed delivery: the code of the runner's error, the message of the last attempt's failure. */
function failure(err: unknown, attempts: readonly AttemptRecord[]): DeliveryOutcome {
  const code = isGatewayError(err) ? err.code : 'INTERNAL';
  // The runner's error says how many attempts failed; the job keeps the last one's own words.
  const last = isGatewayError(err) && isGatewayError(err.cause) ? err.cause : err;
  const message = last instanceof Error ? last.message : String(last);
  const target = attempts.length > 0 ? attempts[attempts.length - 1]!.target : null;
  return { ok: false, status: null, target, code, error: `${code}: ${message}` };
}

/**
 * Sends `req` to a target of `pool` and waits for the whole answer (its body is read and
 * dropped, so the connection is reused); `deadline` is the delivery's one deadline. Each
 * attempt's record is appended to `attempts` (metrics, the access log of a direct delivery).
 * With `tracing`, a stored `traceparent` goes out with a new span id. Never throws.
 */
export async function deliver(
  req: DeliveryRequest,
  route: Route,
  spec: DeferSpec,
  pool: Pool | undefined,
  forward: Forward,
  deadline: AbortHook,
  attempts: AttemptRecord[],
  tracing = false,
): Promise<DeliveryOutcome> {
  if (pool === undefined) {
    return {
      ok: false,
      status: null,
      target: null,
      code: 'NO_TARGET_AVAILABLE',
      error: `no pool "${spec.pool}"`,
    };
  }
  const request: OutboundRequest = {
    method: req.method,
    path: '',
    headers: [],
    body: req.body.length > 0 ? req.body : null,
    headersTimeoutMs: route.headersTimeoutMs,
    idleTimeoutMs: route.idleTimeoutMs,
  };
  let result: AttemptResult;
  try {
    result = await runStrategy({
      routeId: route.id,
      pool,
      pickContext: null,
      spec: strategyOf(spec),
      request,
      forward: preparedForward(forward, req.url, null, prepareHeaders(req, spec.host, tracing)),
      signal: deadline,
      replayable: true,
      idempotent: isIdempotent(req.method),
      attempts,
    });
  } catch (err) {
    return failure(err, attempts);
  }
  const target = result.target;
  const ok = spec.success[result.status] === 1;
  const sink = new DrainSink(ok ? 0 : ERROR_BODY_BYTES);
  result.pipeTo(sink);
  // The verdict is the status; a body that breaks off afterwards does not change it.
  const body = await sink.done.catch(() => Buffer.alloc(0));
  if (ok) return { ok: true, status: result.status, target: target.id };
  const text = body.toString('utf8').replace(/\s+/g, ' ').trim();
  return {
    ok: false,
    status: result.status,
    target: target.id,
    code: 'REFUSED',
    error: `${target.id} answered ${result.status}${text ? `: ${text}` : ''}`,
  };
}
