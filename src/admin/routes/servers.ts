/**
 * The seed-compatible shorthand on `admin.default_pool` (Weldr's management API, issue 12):
 * `GET /servers` lists the pool, `POST /servers {"url"}` adds a target (201; one already
 * there: 200 and the pool unchanged, as Weldr's `Pool::add` ignores a duplicate),
 * `DELETE /servers/:ip/:port` removes (and drains) the one at that address.
 */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';
import type { TargetConfig } from '../../upstream/spec.ts';
import { GatewayError, isGatewayError } from '../../errors.ts';
import { drainQuery, serverParams, targetBody } from '../schemas.ts';
import { waitFlag } from './pools.ts';
import { detailEntry } from './stats.ts';

const bare = (host: string) => host.replace(/^\[|\]$/g, '').toLowerCase();

export const serverRoutes = (manager: Manager) => async (app: FastifyInstance) => {
  // Weldr's README registers with `curl -d '{...}'`, which says
  // application/x-www-form-urlencoded: in this plugin (only /servers) a body is JSON whatever
  // its content type says, and one that is not JSON is a 400 naming what to send.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch (err) {
      done(
        new GatewayError(
          'INVALID_BODY',
          `body: not JSON (${(err as Error).message}); send {"url":"http://host:port"}`,
        ),
        undefined,
      );
    }
  });

  /** Weldr's `PoolServers` (servers with HATEOAS links) with Manifold's target view in each. */
  const listing = async () => {
    const pool = (await manager.pools(manager.config.admin.default_pool))[0];
    return {
      pool: pool.name,
      servers: pool.targets.map((t) => {
        const e = detailEntry(t);
        return {
          ...e,
          links: [{ rel: 'delete', href: `/servers/${e.ip}/${e.port}`, method: 'DELETE' }],
        };
      }),
      links: [{ rel: 'add', href: '/servers', method: 'POST' }],
    };
  };

  app.get('/servers', { schema: { summary: 'Targets of admin.default_pool' } }, listing);

  app.post<{ Body: TargetConfig }>(
    '/servers',
    { schema: { summary: 'Add a target to admin.default_pool', body: targetBody } },
    async (req, reply) => {
      try {
        const target = await manager.addTarget(manager.config.admin.default_pool, req.body);
        reply.code(201);
        return { target, ...(await listing()) };
      } catch (err) {
        if (!isGatewayError(err) || err.code !== 'CONFLICT') throw err;
        reply.code(200);
        return listing();
      }
    },
  );

  app.delete<{ Params: { ip: string; port: string }; Querystring: { wait?: string } }>(
    '/servers/:ip/:port',
    {
      schema: {
        summary: 'Remove (and drain) the target at ip:port',
        params: serverParams,
        querystring: drainQuery,
      },
    },
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
