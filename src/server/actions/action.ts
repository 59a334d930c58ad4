/**
 * What every action handler is and what it shares (issue 11 item 3): the pipeline matches the
 * route, then calls the handler compiled for it when the snapshot was published (index.ts), so
 * no request branches on the action's kind.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Acceptor } from '../../defer/accept.ts';
import { GatewayError, isGatewayError } from '../../errors.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Metrics } from '../../observability/metrics.ts';
import type { Forward } from '../../proxy/forward.ts';
import type { RequestContext } from '../context.ts';
import { sendError } from '../respond.ts';

/**
 * One route's action for one request. What it throws synchronously the pipeline renders; what
 * fails later it hands to `ActionServices.fail`. The route and what it names in the snapshot
 * (its pool, its batch handler) are bound when the handler is compiled, not looked up here.
 */
export type ActionHandler = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => void;

/** What the handlers share, one per pipeline: the services it was built with and its drain. */
export class ActionServices {
  readonly log: Logger;
  readonly forward: Forward;
  /** Stores the requests of `defer` routes (issue 6); without it they get 503. */
  readonly acceptor: Acceptor | undefined;
  /** Where answers and attempts are counted (issue 7); null = `metrics.enabled: false`. */
  readonly metrics: Metrics | null;
  /** Set by `Pipeline.drain()`: from then on every answer carries `Connection: close`. */
  draining = false;

  constructor(log: Logger, forward: Forward, acceptor: Acceptor | undefined, metrics: Metrics | null) {
    this.log = log;
    this.forward = forward;
    this.acceptor = acceptor;
    this.metrics = metrics;
  }

  /** A request's error downstream: rendered before headers, the stream destroyed after. */
  fail(res: ServerResponse, ctx: RequestContext, err: unknown): void {
    const e = isGatewayError(err) ? err : new GatewayError('INTERNAL', undefined, { cause: err });
    if (e.code === 'INTERNAL') this.log.error({ req_id: ctx.id, err }, 'unexpected error');
    ctx.errorCode = e.code;
    if (e.code === 'CLIENT_CLOSED') {
      ctx.status = 499;
      res.destroy();
      return;
    }
    ctx.status = res.headersSent ? ctx.status : e.status;
    // After a malformed request, or with an unread body behind a refusal, the connection
    // cannot be trusted or reused: close it.
    ctx.bytesOut += sendError(res, e, ctx.id, e.code === 'BODY_TOO_LARGE' || e.code === 'BAD_REQUEST' || this.draining);
  }
}
