/**
 * The handler of each route, compiled when a snapshot is published (issue 11 item 3, STYLE.md
 * §5): the action's kind is looked at here, once per route, never per request.
 */
import type { CompiledRoute } from '../../config/compile.ts';
import { GatewayError } from '../../errors.ts';
import type { Snapshot } from '../snapshot.ts';
import type { ActionHandler, ActionServices } from './action.ts';
import { deferHandler } from './defer.ts';
import { multiplexHandler } from './multiplex.ts';
import { proxyHandler } from './proxy.ts';
import { respondHandler } from './respond.ts';

/** Every route of `snapshot` → its handler, over that snapshot's pools and batch handlers. */
export function compileHandlers(snapshot: Snapshot, services: ActionServices): ReadonlyMap<CompiledRoute, ActionHandler> {
  const handlers = new Map<CompiledRoute, ActionHandler>();
  for (const route of snapshot.routes) handlers.set(route, handlerOf(route, snapshot, services));
  return handlers;
}

function handlerOf(route: CompiledRoute, snapshot: Snapshot, services: ActionServices): ActionHandler {
  const action = route.action;
  switch (action.kind) {
    case 'respond':
      return respondHandler(action, services);
    case 'proxy':
      return proxyHandler(route, action, snapshot, services);
    case 'defer':
      return deferHandler(route, action, snapshot, services);
    case 'multiplex':
      return multiplexHandler(route, snapshot, services);
    case 'connect':
      return connectOverHttp;
  }
}

/** Never taken: a connect route's matcher requires CONNECT, which node:http hands to `Pipeline.connect`. */
const connectOverHttp: ActionHandler = () => {
  throw new GatewayError('METHOD_NOT_ALLOWED', 'this route takes CONNECT only');
};
