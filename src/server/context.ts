/**
 * Per-request state, carried through the pipeline instead of a dozen parameters: request id,
 * timing, the route and target chosen, and what went out. Strategies and concerns read it;
 * only the pipeline writes the response.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { CompiledRoute } from '../config/compile.ts';
import { performance } from 'node:perf_hooks';
import type { TracingConfig } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import { type TraceContext, traceOf } from '../observability/trace.ts';
import type { AttemptRecord } from '../strategy/types.ts';

/**
 * The one deadline of a request or a delivery (DESIGN.md vocabulary): an AbortSignal whose
 * reason is always a GatewayError — CLIENT_CLOSED when the downstream leaves, TARGET_TIMEOUT
 * when the route timeout (or a batch or delivery deadline) passes. Every path takes its signal
 * from here instead of building its own (issue 11: an `AbortSignal.timeout()` reason, a
 * DOMException with a numeric `code`, crashed classify()). The controller is made on first use,
 * so a route that never reads the signal (respond) pays nothing, and the timer carries its
 * arguments instead of a closure.
 */
export class Deadline {
  #controller: AbortController | null = null;
  #timer: NodeJS.Timeout | undefined = undefined;

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  get aborted(): boolean {
    return this.#controller !== null && this.#controller.signal.aborted;
  }

  /** Aborts after `ms` (0 = never) with TARGET_TIMEOUT naming `what`; a later call replaces the timer. */
  within(ms: number, what: string): this {
    if (ms > 0 && !this.aborted) {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(expire, ms, this, ms, what);
    }
    return this;
  }

  /** Ends the deadline now with `reason` (the first reason wins). */
  abort(reason: GatewayError): void {
    clearTimeout(this.#timer);
    const controller = (this.#controller ??= new AbortController());
    if (!controller.signal.aborted) controller.abort(reason);
  }

  /** The work finished: the timer stops; nothing aborts. */
  clear(): void {
    clearTimeout(this.#timer);
  }

  /** The downstream connection closed: a complete answer clears, anything else is CLIENT_CLOSED. */
  closed(finished: boolean): void {
    if (finished) this.clear();
    else this.abort(new GatewayError('CLIENT_CLOSED'));
  }
}

function expire(deadline: Deadline, ms: number, what: string): void {
  deadline.abort(new GatewayError('TARGET_TIMEOUT', `${what} deadline of ${ms} ms passed`));
}

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
