/**
 * `GET /ready` (issue 15): the readiness check a load balancer polls. 200 `{"ready":true}`
 * while the gateway takes traffic; 503 `NOT_READY` (the one error body) when it should get
 * none: it is draining, or the queue store behind its defer routes does not answer within
 * `queue.commit_timeout`. No token needed (a probe carries none; it learns only yes or no),
 * but the admin Host rule holds like everywhere on this port.
 */
import type { FastifyInstance } from 'fastify';
import type { Queue } from '../../defer/queue.ts';
import { GatewayError } from '../../errors.ts';

export interface Readiness {
  /** True once a shutdown began: new traffic should go elsewhere. */
  draining: () => boolean;
  /** The queue of defer routes, when one is open. */
  queue: () => Queue | null;
}

export const readyRoutes = (ready: Readiness) => async (app: FastifyInstance) => {
  app.get('/ready', { schema: { tags: ['health'], summary: 'Readiness: 200 when the gateway takes traffic' } }, async (_req, reply) => {
    if (ready.draining()) throw new GatewayError('NOT_READY', 'the gateway is draining');
    const queue = ready.queue();
    if (queue !== null) {
      // A store that just made a caller wait past queue.commit_timeout: 503 at once, rather
      // than a probe that waits as long again (a load balancer's own probe timeout may be shorter).
      const health = queue.health();
      if (!health.ok) throw new GatewayError('NOT_READY', `the queue store is away: ${health.reason}`);
      try {
        await queue.ping();
      } catch (err) {
        throw new GatewayError('NOT_READY', `the queue store is away: ${(err as Error).message}`);
      }
    }
    reply.header('cache-control', 'no-store');
    return { ready: true };
  });
};
