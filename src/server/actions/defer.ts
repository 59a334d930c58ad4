/**
 * `defer` (issue 6): the request is stored (or, in overflow mode, delivered) before anything is
 * answered; then the route's status with `{"id"}` and `x-manifold-job-id`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledRoute } from '../../config/compile.ts';
import { JOB_ID_HEADER } from '../../defer/delivery.ts';
import type { DeferAction, DeferSpec } from '../../defer/spec.ts';
import { GatewayError } from '../../errors.ts';
import type { Pool } from '../../upstream/pool.ts';
import type { RequestContext } from '../context.ts';
import { sendJson, sendStatic } from '../respond.ts';
import type { Snapshot } from '../snapshot.ts';
import type { ActionHandler, ActionServices } from './action.ts';

/** The body of an answer without one (`defer` with `body: empty`). */
const EMPTY = Buffer.alloc(0);

export function deferHandler(
  route: CompiledRoute,
  action: DeferAction,
  snapshot: Snapshot,
  services: ActionServices,
): ActionHandler {
  // The pool of the overflow's direct delivery; undefined where this process serves none.
  const pool = snapshot.pools.get(action.spec.pool);
  return (req, res, ctx) => {
    defer(req, res, ctx, route, action.spec, pool, services).catch((err) => services.fail(res, ctx, err));
  };
}

async function defer(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  route: CompiledRoute,
  spec: DeferSpec,
  pool: Pool | undefined,
  services: ActionServices,
): Promise<void> {
  const acceptor = services.acceptor;
  if (acceptor === undefined) throw new GatewayError('QUEUE_UNAVAILABLE', 'no queue in this process');
  const accepted = await acceptor.accept(req, ctx, route, spec, pool, ctx.listener.proto);
  services.metrics?.accepted(
    route.id,
    accepted.duplicate ? 'duplicate' : accepted.direct ? 'direct' : 'queued',
    ctx.elapsedSeconds(),
  );
  ctx.status = accepted.status;
  ctx.bytesOut =
    spec.body === 'empty'
      ? sendStatic(res, accepted.status, EMPTY, ctx.id, services.draining, [JOB_ID_HEADER, accepted.id])
      : sendJson(
          res,
          accepted.status,
          JSON.stringify({ id: accepted.id }),
          ctx.id,
          services.draining,
          [JOB_ID_HEADER, accepted.id],
        );
}
