/**
 * `multiplex` (issue 5): reads the batch (bounded), runs it under one deadline and answers 200
 * with every result in order. The downstream going away aborts the batch (499); the route
 * timeout, when shorter than the batch's, ends it early with partial results, as the batch
 * deadline would.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledRoute } from '../../config/compile.ts';
import { isGatewayError } from '../../errors.ts';
import { FORMATS, mergeResults } from '../../multiplex/formats/index.ts';
import type { MultiplexHandler } from '../../multiplex/handler.ts';
import { readBody } from '../../proxy/body.ts';
import type { RequestContext } from '../context.ts';
import { sendJson } from '../respond.ts';
import type { Snapshot } from '../snapshot.ts';
import type { ActionHandler, ActionServices } from './action.ts';

export function multiplexHandler(route: CompiledRoute, snapshot: Snapshot, services: ActionServices): ActionHandler {
  // The route's batch handler in this snapshot; a newer one may retire it, `use()` keeps it open.
  const lease = snapshot.multiplex.get(route.id)!;
  return (req, res, ctx) => {
    // use() now, not after the body is read: a reload meanwhile must not close the handler.
    lease
      .use((handler) => multiplex(req, res, ctx, route, handler, services))
      .catch((err) => services.fail(res, ctx, err));
  };
}

async function multiplex(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  route: CompiledRoute,
  handler: MultiplexHandler,
  services: ActionServices,
): Promise<void> {
  // The request's one deadline (issue 11) is the batch deadline: the route timeout arms it here,
  // the batch's timeout_msec in run() (the earlier wins), and each item's derives from it.
  ctx.deadline.within(route.timeoutMs, 'route');
  const opts = handler.options;
  const format = FORMATS[opts.format];
  try {
    const max = Math.min(route.maxBodyBytes ?? opts.maxBodyBytes, opts.maxBodyBytes);
    const parsed = format.parse(await readBody(req, max), opts);
    const result = await handler.run(parsed.batch, ctx.deadline);
    const responses = mergeResults(parsed, result.responses);
    services.metrics?.batch(route.id, responses);
    ctx.status = 200;
    ctx.bytesOut = sendJson(res, 200, format.render(responses), ctx.id, services.draining);
  } catch (err) {
    // Issue 12: a compat format answers a whole-batch error in its own shape.
    if (!isGatewayError(err) || err.code === 'CLIENT_CLOSED' || res.headersSent) throw err;
    const body = format.error(err);
    if (body === null) throw err;
    ctx.status = err.status;
    ctx.errorCode = err.code;
    ctx.bytesOut = sendJson(res, err.status, body, ctx.id, err.code === 'BODY_TOO_LARGE' || services.draining);
  } finally {
    ctx.deadline.clear();
  }
}
