/**
 * One delivery of one job: pick a target of the route's pool, send the stored request through
 * the same `forward` as proxy routes (so selectors, passive health and target counters see
 * it), and classify the answer at response-headers time. Used by the deliverers and by the
 * direct deliveries of overflow mode.
 *
 * Like the `single` strategy, a failure to connect (nothing was sent) tries another target
 * within the same delivery; any other failure is the attempt's result, and the job's retry
 * schedule decides what happens next.
 */
import { isGatewayError } from '../errors.ts';
import type { AttemptError, BodySink, Forward, OutboundRequest } from '../proxy/forward.ts';
import { TRACEPARENT, withNewSpan } from '../observability/trace.ts';
import { hostFor, joinPath } from '../proxy/headers.ts';
import type { Route } from '../routing/route.ts';
import type { Pool } from '../upstream/pool.ts';
import type { Target } from '../upstream/target.ts';
import type { HeaderPairs } from './queue.ts';
import type { DeferSpec } from './spec.ts';

/** Headers every delivery carries, so a receiver can de-duplicate (delivery is at least once). */
export const JOB_ID_HEADER = 'x-manifold-job-id';
export const ATTEMPT_HEADER = 'x-manifold-attempt';

/** How much of a refused answer's body is kept for the job's `lastError`. */
const ERROR_BODY_BYTES = 512;
/** Targets tried in one delivery when connecting fails (nothing sent). */
const MAX_CONNECT_TRIES = 3;

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

function outboundHeaders(req: DeliveryRequest, spec: DeferSpec, target: Target, tracing: boolean): string[] {
  const out: string[] = [];
  const host = hostFor(spec.host, target);
  let hostSent = false;
  for (const [name, value] of req.headers) {
    if (host !== undefined && name.length === 4 && name.toLowerCase() === 'host') {
      if (!hostSent) out.push(name, host);
      hostSent = true;
      continue;
    }
    // Issue 7: each delivery is a span of the trace the request came with.
    if (tracing && name.length === 11 && name.toLowerCase() === TRACEPARENT) {
      out.push(name, withNewSpan(value));
      continue;
    }
    out.push(name, value);
  }
  if (host !== undefined && !hostSent) out.push('host', host);
  out.push(JOB_ID_HEADER, req.id, ATTEMPT_HEADER, String(req.attempt));
  return out;
}

function failure(err: unknown, target: Target | null): DeliveryOutcome {
  const code = isGatewayError(err) ? err.code : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return { ok: false, status: null, target: target?.id ?? null, code, error: `${code}: ${message}` };
}

/**
 * Sends `req` once to a target of `pool` and waits for the whole answer (its body is read
 * and dropped, so the connection is reused); `signal` is the delivery's deadline. With
 * `tracing`, a stored `traceparent` goes out with a new span id. Never throws.
 */
export async function deliver(
  req: DeliveryRequest,
  route: Route,
  spec: DeferSpec,
  pool: Pool | undefined,
  forward: Forward,
  signal: AbortSignal,
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
  const tried = new Set<Target>();
  let last: DeliveryOutcome | null = null;
  while (tried.size < MAX_CONNECT_TRIES) {
    const target = pool.pick(tried, null);
    if (target === undefined) break;
    tried.add(target);
    const request: OutboundRequest = {
      method: req.method,
      path: joinPath(target.spec.basePath, req.url, null),
      headers: outboundHeaders(req, spec, target, tracing),
      body: req.body.length > 0 ? req.body : null,
      headersTimeoutMs: route.headersTimeoutMs,
      idleTimeoutMs: route.idleTimeoutMs,
    };
    try {
      const result = await forward(target, request, signal);
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
    } catch (err) {
      last = failure(err, target);
      const connectFailure = (err as { phase?: string }).phase === 'connect';
      if (!connectFailure || signal.aborted) return last;
    }
  }
  return (
    last ?? {
      ok: false,
      status: null,
      target: null,
      code: 'NO_TARGET_AVAILABLE',
      error: `NO_TARGET_AVAILABLE: pool "${spec.pool}" has no available target`,
    }
  );
}
