/**
 * The seed-compatible shorthand on `admin.default_pool`: `POST /servers {"url"}` adds a
 * target, `DELETE /servers/:ip/:port` removes (and drains) the one at that address.
 */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';
import type { TargetConfig } from '../../config/schema.ts';
import { GatewayError } from '../../errors.ts';
import { drainQuery, serverParams, targetBody } from '../schemas.ts';
import { waitFlag } from './pools.ts';

const bare = (host: string) => host.replace(/^\[|\]$/g, '').toLowerCase();

export const serverRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  app.post<{ Body: TargetConfig }>('/servers', { schema: { body: targetBody } }, async (req, reply) => {
    reply.code(201);
    return { target: await manager.addTarget(manager.config.admin.default_pool, req.body) };
  });

  app.delete<{ Params: { ip: string; port: string }; Querystring: { wait?: string } }>(
    '/servers/:ip/:port',
    { schema: { params: serverParams, querystring: drainQuery } },
    async (req, reply) => {
      const pool = manager.config.admin.default_pool;
      const { ip, port } = req.params;
      const found = (await manager.pools(pool))[0].targets.find((t) => {
        if (t.state === 'draining') return false;
        const u = new URL(t.url);
        return bare(u.hostname) === bare(ip) && (u.port || (u.protocol === 'https:' ? '443' : '80')) === port;
      });
      if (!found) throw new GatewayError('NOT_FOUND', `pool "${pool}" has no target at ${ip}:${port}`);
      const result = await manager.removeTarget(pool, found.id, waitFlag(req.query));
      reply.code(result.drained ? 200 : 202);
      return result;
    },
  );
};
