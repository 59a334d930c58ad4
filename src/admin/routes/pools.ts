/** Pools and their targets: list, create, delete; add, re-weight, drain/enable, remove (with drain). */
import type { FastifyInstance } from 'fastify';
import type { Manager, TargetPatch } from '../../cluster/manager.ts';
import type { PoolConfig, TargetConfig } from '../../upstream/spec.ts';
import { drainQuery, poolBody, poolParams, targetBody, targetParams, targetPatchBody } from '../schemas.ts';

type PoolParams = { pool: string };
type TargetParams = { pool: string; id: string };

export const waitFlag = (q: { wait?: string }) => q.wait === 'true' || q.wait === '1';

export const poolRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  app.get('/pools', async () => ({ pools: await manager.pools() }));

  app.post<{ Body: PoolConfig & { name: string } }>(
    '/pools',
    { schema: { body: poolBody } },
    async (req, reply) => {
      const { name, ...pool } = req.body;
      reply.code(201);
      return { pool: await manager.createPool(name, pool) };
    },
  );

  app.get<{ Params: PoolParams }>('/pools/:pool', { schema: { params: poolParams } }, async (req) => ({
    pool: (await manager.pools(req.params.pool))[0],
  }));

  app.delete<{ Params: PoolParams }>('/pools/:pool', { schema: { params: poolParams } }, async (req) => {
    await manager.deletePool(req.params.pool);
    return { deleted: req.params.pool };
  });

  app.get<{ Params: PoolParams }>(
    '/pools/:pool/targets',
    { schema: { params: poolParams } },
    async (req) => ({
      targets: (await manager.pools(req.params.pool))[0].targets,
    }),
  );

  app.post<{ Params: PoolParams; Body: TargetConfig }>(
    '/pools/:pool/targets',
    { schema: { params: poolParams, body: targetBody } },
    async (req, reply) => {
      reply.code(201);
      return { target: await manager.addTarget(req.params.pool, req.body) };
    },
  );

  app.patch<{ Params: TargetParams; Body: TargetPatch }>(
    '/pools/:pool/targets/:id',
    { schema: { params: targetParams, body: targetPatchBody } },
    async (req) => ({ target: await manager.updateTarget(req.params.pool, req.params.id, req.body) }),
  );

  app.delete<{ Params: TargetParams; Querystring: { wait?: string } }>(
    '/pools/:pool/targets/:id',
    { schema: { params: targetParams, querystring: drainQuery } },
    async (req, reply) => {
      const result = await manager.removeTarget(req.params.pool, req.params.id, waitFlag(req.query));
      reply.code(result.drained ? 200 : 202);
      return result;
    },
  );
};
