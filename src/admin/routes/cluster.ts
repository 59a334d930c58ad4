/**
 * `GET /cluster` (issue 16): the gateways sharing this one's cluster store, each with its
 * state (`up`, or `gone` after `cluster.gone_after` without a heartbeat), the versions it
 * serves and its request totals. 404 without `cluster.store`; 503 `CLUSTER_UNAVAILABLE`
 * while PostgreSQL is away (the registry lives there).
 */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';
import { GatewayError } from '../../errors.ts';

export async function clusterView(manager: Manager) {
  const store = manager.store;
  if (store === null) throw new GatewayError('NOT_FOUND', 'no cluster: cluster.store is not set, this gateway is alone');
  const instances = await store.instances();
  return {
    // peers: the instances up at this one's last heartbeat, which divide defer limits (item 4).
    store: { available: store.available, version: manager.storeVersion, peers: store.peers },
    self: store.id,
    instances: instances.map(({ report, ...i }) => ({
      ...i,
      admin: (report.admin as string | undefined) ?? null,
      stats: (report.stats as Record<string, unknown> | undefined) ?? null,
    })),
  };
}

export const clusterRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  app.get('/cluster', { schema: { summary: 'The gateways sharing the cluster store, with their state' } }, () =>
    clusterView(manager),
  );
};
