/**
 * `GET <metrics.path>` on the admin port (issue 7): the Prometheus exposition of every process,
 * summed by the Manager. Behind the admin token like every admin call; `metrics.port` serves
 * the same text without one (admin/metrics-server.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';
import { CONTENT_TYPE } from '../../observability/metrics.ts';

export const metricsRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  const { enabled, path } = manager.config.metrics;
  if (!enabled) return;
  app.get(path, async (_req, reply) => {
    const registry = await manager.metrics();
    reply.type(CONTENT_TYPE).header('cache-control', 'no-store');
    return registry === null ? '' : registry.metrics();
  });
};
