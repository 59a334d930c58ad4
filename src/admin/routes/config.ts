/** `POST /config/reload`: what SIGHUP does, with the outcome in the answer (422 when refused). */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';

export const configRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  app.post('/config/reload', async () => ({ reloaded: true, ...(await manager.reload()) }));
};
