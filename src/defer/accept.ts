/**
 * The accept side of a `defer` route (DESIGN.md "Request flow", issue 6 point 1): read the
 * request whole (bounded), store it as a job, and only once the store has durably committed
 * say so — the pipeline then answers the route's status with `{"id"}`. A store that cannot
 * commit rejects with QUEUE_UNAVAILABLE (503): nothing is acknowledged that was not stored.
 *
 * Headers are stored as they will be sent: hop-by-hop ones removed and `X-Forwarded-*`,
 * `Via` and `x-request-id` added by the proxy's own rules (proxy/headers.ts), because the
 * client address and protocol are only known now. `Content-Length` is recomputed at delivery.
 *
 * Overflow mode (asyncproxy's enqueue rate): while under the route's overflow rate the
 * request is delivered directly and acknowledged once the target accepted it; a failed
 * direct delivery, and everything over the rate, is queued. A request with an
 * `Idempotency-Key` is always queued, so that the key is remembered.
 */
import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors.ts';
import { clientAddress } from '../lib/address.ts';
import type { Logger } from '../observability/logger.ts';
import type { TraceContext } from '../observability/trace.ts';
import { readBody } from '../proxy/body.ts';
import { Deadline } from '../deadline.ts';
import type { Forward } from '../proxy/forward.ts';
import { outboundRequestHeaders } from '../proxy/headers.ts';
import type { Route } from '../routing/route.ts';
import type { AttemptRecord } from '../strategy/types.ts';
import type { Pool } from '../upstream/pool.ts';
import { ATTEMPT_HEADER, deliver, type DeliveryOutcome, JOB_ID_HEADER } from './delivery.ts';
import { IDEMPOTENCY_KEY_MAX, newJobId, type Queue } from './queue.ts';
import { RateLimiter } from './rate.ts';
import type { DeferSpec } from './spec.ts';

export interface Accepted {
  status: number;
  id: string;
  /** The Idempotency-Key was seen before: `id` is the first job's. */
  duplicate: boolean;
  /** Overflow mode delivered it directly (the target accepted it); nothing was stored. */
  direct: boolean;
}

/** What accepting reads and writes of the request's context (server/context.ts RequestContext). */
export interface AcceptContext {
  readonly id: string;
  readonly trace: TraceContext | null;
  /** Set to the target a direct (overflow) delivery reached. */
  target: string | null;
  /** Set to the attempts of a direct (overflow) delivery. */
  attempts: AttemptRecord[] | null;
}

export interface AcceptorOptions {
  forward: Forward;
  log: Logger;
}

/** Headers a client must not set: the gateway sets them on every delivery. */
const RESERVED = new Set(['content-length', JOB_ID_HEADER, ATTEMPT_HEADER]);

export class Acceptor {
  #queue: Queue | null = null;
  readonly #forward: Forward;
  readonly #log: Logger;
  /** Per route id: its overflow limiter, kept across snapshots while the rate is the same. */
  readonly #overflow = new Map<string, RateLimiter>();

  constructor(options: AcceptorOptions) {
    this.#forward = options.forward;
    this.#log = options.log;
  }

  /** The store to enqueue into; null while none is open (requests then get 503). */
  setQueue(queue: Queue | null): void {
    this.#queue = queue;
  }

  async accept(
    req: IncomingMessage,
    ctx: AcceptContext,
    route: Route,
    spec: DeferSpec,
    pool: Pool | undefined,
    proto: 'http' | 'https',
  ): Promise<Accepted> {
    const key = idempotencyKey(req);
    const max = Math.min(route.maxBodyBytes ?? Number.POSITIVE_INFINITY, spec.maxBodyBytes);
    const body = await readBody(req, max);
    const queue = this.#queue;
    if (queue === null) throw new GatewayError('QUEUE_UNAVAILABLE', 'the queue is not open');
    const flat = outboundRequestHeaders(req.rawHeaders, {
      clientIp: clientAddress(req.socket.remoteAddress),
      proto,
      host: req.headers.host ?? '',
      requestId: ctx.id,
      // The client's Host is stored; each delivery sets its target's where `host` says so.
      hostMode: 'preserve',
      // Stored with a span id of its own; each later delivery gets a new one (delivery.ts).
      trace: ctx.trace,
      forwarding: route.forwarding,
      http2: req.httpVersionMajor === 2,
    }).for(null);
    const headers: Array<[string, string]> = [];
    for (let i = 0; i < flat.length; i += 2) {
      if (!RESERVED.has(flat[i].toLowerCase())) headers.push([flat[i], flat[i + 1]]);
    }
    const job = {
      route: route.id,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      headers,
      body,
      idempotencyKey: key,
      maxAttempts: spec.maxAttempts,
    };
    let id: string | undefined;
    if (spec.overflowPerSecond !== null && key === undefined && this.#overflowAllows(route.id, spec)) {
      id = newJobId();
      if (await this.#direct(ctx, route, spec, pool, { ...job, id }))
        return { status: spec.status, id, duplicate: false, direct: true };
      // Failed: queued under the same id, eligible at once; its own attempts and backoff follow.
    }
    const stored = await queue.enqueue({ ...job, id });
    return { status: spec.status, id: stored.id, duplicate: stored.duplicate, direct: false };
  }

  /** Overflow mode: one delivery now, bounded by the route timeout; true when accepted. */
  async #direct(
    ctx: AcceptContext,
    route: Route,
    spec: DeferSpec,
    pool: Pool | undefined,
    job: { id: string; method: string; url: string; headers: Array<[string, string]>; body: Buffer },
  ): Promise<boolean> {
    // Not tied to the client: once sent, the outcome decides whether the job must be stored.
    // Its own Deadline (the route timeout only), so the reason is a GatewayError (issue 11).
    const deadline = new Deadline().within(route.timeoutMs, 'route');
    // Its attempts are the request's, as a proxied request's are (access log, metrics).
    const attempts: AttemptRecord[] = [];
    ctx.attempts = attempts;
    let outcome: DeliveryOutcome;
    try {
      outcome = await deliver({ ...job, attempt: 0 }, route, spec, pool, this.#forward, deadline, attempts);
    } finally {
      deadline.clear();
    }
    ctx.target = outcome.target;
    if (!outcome.ok)
      this.#log.debug(
        { req_id: ctx.id, job: job.id, error: outcome.error },
        'direct delivery failed; queued',
      );
    return outcome.ok;
  }

  /** A token for one direct delivery (always, with rate `unlimited`). */
  #overflowAllows(routeId: string, spec: DeferSpec): boolean {
    const rate = spec.overflowPerSecond!;
    if (rate === Number.POSITIVE_INFINITY) return true;
    const burst = spec.overflowBurst ?? undefined;
    let limiter = this.#overflow.get(routeId);
    if (limiter === undefined || limiter.perSecond !== rate || (burst !== undefined && limiter.burst !== burst)) {
      limiter = new RateLimiter(rate, burst);
      this.#overflow.set(routeId, limiter);
    }
    return limiter.tryTake();
  }
}

/** The `Idempotency-Key` header (IETF draft-ietf-httpapi-idempotency-key-header), bounded. */
function idempotencyKey(req: IncomingMessage): string | undefined {
  const value = req.headers['idempotency-key'];
  if (value === undefined) return undefined;
  const key = (Array.isArray(value) ? value.join(', ') : value).trim();
  if (key === '' || key.length > IDEMPOTENCY_KEY_MAX) {
    throw new GatewayError('BAD_REQUEST', `Idempotency-Key must be 1 to ${IDEMPOTENCY_KEY_MAX} characters`);
  }
  return key;
}
