/**
 * Totals and per-target counters, summed across workers at the time of the call. The shapes
 * are Weldr's documented ones (issue 12): `/stats` has `client`/`server` `{success, failed}`
 * (beside Manifold's `downstream`/`upstream`, the same numbers), `/stats/detail` is a bare
 * array, one object per target with Weldr's `id`, `ip`, `port`, `success`, `failed` first.
 */
import type { FastifyInstance } from 'fastify';
import type { Manager, TargetView } from '../../cluster/manager.ts';
import type { Queue } from '../../defer/queue.ts';
import { clusterFigures, type Scope, sumDetail, sumStats } from '../scope.ts';
import { scopeQuery } from '../schemas.ts';

/** Weldr's `ip` / `port` (a string, as its README shows) from a target URL. */
function address(url: string): { ip: string; port: string } {
  const u = new URL(url);
  return {
    ip: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port || (u.protocol === 'https:' ? '443' : '80'),
  };
}

export function detailEntry(t: TargetView) {
  const { id, ...rest } = t;
  return {
    id,
    ...address(t.url),
    success: Math.max(0, t.requests - t.failures - t.cancelled),
    failed: t.failures,
    ...rest,
  };
}

type ScopeQuery = { Querystring: { scope?: Scope } };

export const statsRoutes = (manager: Manager, queue: () => Queue | null) => async (app: FastifyInstance) => {
  app.get<ScopeQuery>(
    '/stats',
    { schema: { summary: 'Request totals across workers (or, scope=cluster, instances)', querystring: scopeQuery } },
    async (req) => {
      if (req.query.scope === 'cluster') {
        const s = sumStats(await clusterFigures(manager, queue));
        return { client: s.downstream, server: s.upstream, ...s, config_version: manager.version, scope: 'cluster' };
      }
      const s = (await manager.stats()) as { downstream: unknown; upstream: unknown };
      return { client: s.downstream, server: s.upstream, ...s };
    },
  );
  app.get<ScopeQuery>(
    '/stats/detail',
    { schema: { summary: 'Counters per target (array)', querystring: scopeQuery } },
    async (req) =>
      (req.query.scope === 'cluster'
        ? sumDetail(await clusterFigures(manager, queue))
        : await manager.statsDetail()
      ).map(detailEntry),
  );
};
