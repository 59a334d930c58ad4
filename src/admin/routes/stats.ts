/** Totals and per-target counters, summed across workers at the time of the call. */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';

export const statsRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  app.get('/stats', () => manager.stats());
  app.get('/stats/detail', async () => ({ targets: await manager.statsDetail() }));
};
