/**
 * Per-request state, carried through the pipeline instead of a dozen parameters: request id,
 * timing, the route and target chosen, and what went out. Strategies and concerns read it;
 * only the pipeline writes the response.
 */
import type { IncomingMessage } from 'node:http';
import type { CompiledRoute } from '../config/compile.ts';
import { DEFAULT_LISTENER } from '../config/listeners.ts';
import { performance } from 'node:perf_hooks';
import { Deadline } from '../deadline.ts';
import { type TraceContext, type TracingConfig, traceOf } from '../observability/trace.ts';
import type { AttemptRecord } from '../strategy/types.ts';
import { randomUuidPooled } from '../random.ts';

/** The listener a request came in on (issue 14), as the pipeline needs it. */
export interface ListenerInfo {
  /** `listeners[].name` (`default` for the `listen` shorthand), for `match.listener`. */
  readonly name: string;
  /** What `x-forwarded-proto` and `Forwarded: proto=` say: `https` on a TLS listener. */
  readonly proto: 'http' | 'https';
  /** `redirect_https`: answer with a redirect instead of routing; null = route. */
  readonly redirect: { readonly status: number; readonly port: number } | null;
}

export const DEFAULT_LISTENER_INFO: ListenerInfo = Object.freeze({ name: DEFAULT_LISTENER, proto: 'http', redirect: null });

/**
 * Requests → their listener, set by the listener before admission: a property under a symbol
 * of this module's, so nothing a client sends can name it, on HTTP/1.1 IncomingMessage and
 * HTTP/2 compat requests alike. Not a WeakMap (issue 11 item 4): an entry per request in a
 * long-lived table is the churn that keeps finished requests reachable across scavenges.
 */
const LISTENER: unique symbol = Symbol('manifold.listener');

type Tagged = { [LISTENER]?: ListenerInfo };

export function tagListener(req: object, info: ListenerInfo): void {
  (req as Tagged)[LISTENER] = info;
}

export function listenerOf(req: object): ListenerInfo {
  return (req as Tagged)[LISTENER] ?? DEFAULT_LISTENER_INFO;
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
  /** The listener it came in on (issue 14). */
  readonly listener: ListenerInfo;

  constructor(req: IncomingMessage, now: number, tracing: Readonly<TracingConfig> | null) {
    this.id = requestIdOf(req);
    this.listener = listenerOf(req);
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
  return typeof incoming === 'string' && VALID_REQUEST_ID.test(incoming) ? incoming : randomUuidPooled();
}
