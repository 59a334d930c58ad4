/** `respond`: the route's fixed answer; a readiness answer (`ready`) turns 503 once the drain starts (issue 15). */
import type { CompiledRoute } from '../../config/compile.ts';
import { GatewayError } from '../../errors.ts';
import type { ActionHandler, ActionServices } from './action.ts';

type RespondAction = Extract<CompiledRoute['action'], { kind: 'respond' }>;

export function respondHandler(action: RespondAction, services: ActionServices): ActionHandler {
  // The fixed fields as a list, made once (no object spread per request): the config's, then
  // the length; the request id is each request's own. A configured `content-length` or
  // `x-request-id` gives way to them, as the later key of an object literal did.
  const fixed: Record<string, string> = { ...action.headers, 'content-length': String(action.body.length) };
  delete fixed['x-request-id'];
  const list = Object.entries(fixed).flat();
  return (_req, res, ctx) => {
    if (action.ready && services.draining) throw new GatewayError('NOT_READY', 'the gateway is draining');
    ctx.status = action.status;
    ctx.bytesOut = action.body.length;
    const headers = list.slice();
    headers.push('x-request-id', ctx.id);
    res.writeHead(action.status, headers);
    res.end(action.body);
  };
}
