/**
 * `proxy`: the route's strategy spends attempts on its pool, and the answer it settles on is
 * streamed downstream. Synchronous up to the strategy (issue 11 item 4: no async frame and no
 * await on the request path); a body that may be replayed is read first (prepareBody).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledRoute } from '../../config/compile.ts';
import { GatewayError } from '../../errors.ts';
import { clientAddress } from '../../lib/address.ts';
import { parseGrpcTimeout } from '../../lib/units.ts';
import { hasBody, limitBody } from '../../proxy/body.ts';
import type { AttemptResult, Forward, OutboundRequest } from '../../proxy/forward.ts';
import { downstreamResponseHeaders, outboundRequestHeaders, preparedForward } from '../../proxy/headers.ts';
import { EXHAUSTED_CODE, unlessExhausted } from '../../strategy/exhausted.ts';
import { isIdempotent, runStrategy } from '../../strategy/index.ts';
import { prepareBody } from '../../strategy/replay.ts';
import type { AttemptRecord } from '../../strategy/types.ts';
import type { Pool } from '../../upstream/pool.ts';
import type { RequestContext } from '../context.ts';
import { isGrpc, isHttp2, sendStatic } from '../respond.ts';
import type { Snapshot } from '../snapshot.ts';
import type { ActionHandler, ActionServices } from './action.ts';
import { ResponseSink } from './response-sink.ts';

export type ProxyAction = Extract<CompiledRoute['action'], { kind: 'proxy' }>;

/** A proxy route as its handler binds it when the snapshot is published: its pool is that snapshot's. */
interface ProxyRoute {
  readonly route: CompiledRoute;
  readonly action: ProxyAction;
  readonly pool: Pool;
  readonly services: ActionServices;
}

/** What throws in the handler the pipeline renders; what fails later goes to `services.fail`. */
export function proxyHandler(
  route: CompiledRoute,
  action: ProxyAction,
  snapshot: Snapshot,
  services: ActionServices,
): ActionHandler {
  const p: ProxyRoute = { route, action, pool: snapshot.pools.get(action.pool)!, services };
  return (req, res, ctx) => {
    // The request's one deadline (issue 11); the downstream closing ends it (Pipeline #finish).
    // A gRPC call's own `grpc-timeout` shortens it (the earlier wins).
    const grpcTimeout = req.headers['grpc-timeout'];
    if (grpcTimeout !== undefined) {
      const ms = typeof grpcTimeout === 'string' ? parseGrpcTimeout(grpcTimeout) : null;
      if (ms === null) throw new GatewayError('BAD_REQUEST', `invalid grpc-timeout "${grpcTimeout}"`);
      ctx.deadline.within(ms, 'grpc-timeout');
    }
    // The deadline is the attempts' abort hook itself: no AbortSignal is made for a proxied request.
    const signal = ctx.deadline.within(route.timeoutMs, 'route');
    const body = !hasBody(req)
      ? null
      : route.maxBodyBytes !== null && req.headers['content-length'] === undefined
        ? limitBody(req, route.maxBodyBytes)
        : req;
    const request = outboundRequest(req.method ?? 'GET', route, body);
    // A gRPC body is a stream of messages, full duplex in a bidirectional call (its client
    // waits for an answer before it sends more): never held back to be replayed, so every
    // strategy sends a gRPC call once, as `single` does (issue 14 item 5).
    if (body === null || isGrpc(req.headers['content-type'])) {
      spend(p, req, res, ctx, request, body === null);
      return;
    }
    // Issue 4: the route's strategy spends attempts; a body is buffered only when it may be replayed.
    const declared = req.headers['content-length'];
    prepareBody(body, declared === undefined ? undefined : Number(declared), action.strategy, signal).then(
      (prepared) => {
        request.body = prepared.body;
        spend(p, req, res, ctx, request, prepared.replayable);
      },
      (err: unknown) => services.fail(res, ctx, err),
    );
  };
}

/** Runs the route's strategy over `request` and streams the answer it settles on. */
function spend(
  p: ProxyRoute,
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  request: OutboundRequest,
  replayable: boolean,
): void {
  const { route, action, services } = p;
  const attempts: AttemptRecord[] = [];
  ctx.attempts = attempts;
  const outcome = runStrategy({
    routeId: route.id,
    pool: p.pool,
    pickContext: req,
    spec: action.strategy,
    request,
    forward: attemptForward(services.forward, req, ctx, route, action),
    signal: ctx.deadline,
    replayable,
    idempotent: isIdempotent(request.method),
    attempts,
  });
  // Issue 13: a route with its own answer for "nothing accepted" (quick mode: 500, empty body);
  // without one, no extra promise on the request path.
  const exhausted = action.exhausted;
  (exhausted === null ? outcome : unlessExhausted(outcome, action.strategy.verdicts, attempts)).then(
    (result) => {
      try {
        relay(p, res, ctx, result);
      } catch (err) {
        services.fail(res, ctx, err);
      }
    },
    (err: unknown) => services.fail(res, ctx, err),
  );
}

/** The strategy's answer downstream: the route's "nothing accepted" answer when it is null. */
function relay(p: ProxyRoute, res: ServerResponse, ctx: RequestContext, result: AttemptResult | null): void {
  const { action, services } = p;
  if (result === null) {
    const exhausted = action.exhausted!;
    ctx.status = exhausted.status;
    ctx.errorCode = EXHAUSTED_CODE;
    if (!res.destroyed) ctx.bytesOut = sendStatic(res, ctx.status, exhausted.body, ctx.id, services.draining);
    return;
  }
  if (res.destroyed) {
    result.abort(new GatewayError('CLIENT_CLOSED'));
    return;
  }
  ctx.status = result.status;
  ctx.target = result.target.id;
  const headers = downstreamResponseHeaders(result.headers, ctx.id, p.route.forwarding.via);
  if (action.targetHeader) headers.push('x-manifold-target', result.target.id);
  if (services.draining && !isHttp2(res)) headers.push('connection', 'close');
  const sink = new ResponseSink(res, ctx, result.status, headers, (err) => services.fail(res, ctx, err));
  const signal = ctx.deadline;
  signal.addEventListener('abort', () => result.abort(signal.reason as Error));
  result.pipeTo(sink);
}

/**
 * The request an attempt sends, before its target is known (proxied requests and upgrades
 * alike): path and headers are each attempt's own (attemptForward).
 */
export function outboundRequest(
  method: string,
  route: CompiledRoute,
  body: OutboundRequest['body'],
  upgrade?: string,
): OutboundRequest {
  return {
    method,
    path: '',
    headers: [],
    body,
    headersTimeoutMs: route.headersTimeoutMs,
    idleTimeoutMs: route.idleTimeoutMs,
    upgrade,
  };
}

/**
 * The route's Forward for this request (proxied and upgrades alike): the outbound headers are
 * prepared once (issue 11 item 2); an attempt adds its target's path and, where they differ,
 * Host and a span id.
 */
export function attemptForward(
  forward: Forward,
  req: IncomingMessage,
  ctx: RequestContext,
  route: CompiledRoute,
  action: ProxyAction,
): Forward {
  const headers = outboundRequestHeaders(req.rawHeaders, {
    clientIp: clientAddress(req.socket.remoteAddress),
    proto: ctx.listener.proto,
    host: req.headers.host ?? '',
    requestId: ctx.id,
    hostMode: action.host,
    trace: ctx.trace,
    forwarding: route.forwarding,
    http2: req.httpVersionMajor === 2,
  });
  return preparedForward(forward, req.url ?? '/', action.stripPrefix, headers, (target) => {
    ctx.target = target.id;
  });
}
