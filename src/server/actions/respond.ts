/** `respond`: the route's fixed answer; a readiness answer (`ready`) turns 503 once the drain starts (issue 15). */
import type { CompiledRoute } from '../../config/compile.ts';
import { GatewayError } from '../../errors.ts';
import type { ActionHandler, ActionServices } from './action.ts';

type RespondAction = Extract<CompiledRoute['action'], { kind: 'respond' }>;

export function respondHandler(action: RespondAction, services: ActionServices): ActionHandler {
  return (_req, res, ctx) => {
    if (action.ready && services.draining) throw new GatewayError('NOT_READY', 'the gateway is draining');
    ctx.status = action.status;
    ctx.bytesOut = action.body.length;
    res.writeHead(action.status, {
      ...action.headers,
      'content-length': action.body.length,
      'x-request-id': ctx.id,
    });
    res.end(action.body);
  };
}
