/**
 * Per-request state, carried through the pipeline instead of a dozen parameters: request id,
 * timing, the route and target chosen, and what went out. Strategies and concerns read it;
 * only the pipeline writes the response.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { CompiledRoute } from '../config/compile.ts';
import { performance } from 'node:perf_hooks';
import { Deadline } from '../deadline.ts';
import { type TraceContext, type TracingConfig, traceOf } from '../observability/trace.ts';
import type { AttemptRecord } from '../strategy/types.ts';

const VALID_REQUEST_ID = /^[\w\-.:@+=/]{1,128}$/;

export class RequestContext {
  readonly id: string;
  readonly startedAt: number;
  route: CompiledRoute | null = null;
  /** Id of the target that answered (or was last tried). */
  target: string | null = null;
  status = 0;
  bytesOut = 0;
  errorCode: string | null = null;
  /** Every attempt of a proxied request, in launch order (the access log lists them). */
  attempts: AttemptRecord[] | null = null;
  /** W3C trace context (issue 7): the downstream's or a new one; null with `tracing.enabled: false`. */
  readonly trace: TraceContext | null;
  /** The request's one deadline (client close ∪ route timeout ∪ batch deadline). */
  readonly deadline = new Deadline();

  constructor(req: IncomingMessage, now: number, tracing: Readonly<TracingConfig> | null) {
    this.id = requestIdOf(req);
    this.startedAt = now;
    this.trace = tracing === null ? null : traceOf(req.headers.traceparent, tracing.sampled);
  }

  /** Seconds since the request head arrived (metrics take seconds). */
  elapsedSeconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }
}

/** The request's id: its own valid `x-request-id`, or a new one. */
export function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && VALID_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}
