/**
 * `GET /dashboard/data` (issue 7): what the dashboard shows, in one call. Route counters and
 * duration buckets come from the same summed metrics as `/metrics` (so the page and Prometheus
 * never disagree); pools and targets from the Manager's views (`GET /pools`); the queue depth
 * from the store. Counters are cumulative: the page turns them into rates and quantiles over
 * its own window, so this stays stateless and any number of browsers can watch.
 */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';
import { emptyDepth, type Queue, type RouteDepth, sortByRoute } from '../../defer/queue.ts';
import { liveTotals } from '../../observability/live-line.ts';
import { VERSION } from '../../version.ts';
import { clusterFigures, type Json, routeCounters, type Scope, sumDepth, sumDetail, sumRoutes } from '../scope.ts';
import { scopeQuery } from '../schemas.ts';
import { clusterView } from './cluster.ts';

export interface RouteLive {
  id: string;
  action: 'proxy' | 'defer' | 'multiplex' | 'respond' | 'connect';
  pool: string | null;
  /** Answers since start, every process. */
  requests: number;
  /** 5xx answers since start. */
  errors: number;
  /** Cumulative duration histogram (seconds): `counts[i]` answers took at most `le[i]`. */
  duration: { le: readonly number[]; counts: number[]; count: number };
}

export const liveRoutes = (manager: Manager, queue: () => Queue | null) => async (app: FastifyInstance) => {
  app.get<{ Querystring: { scope?: Scope } }>('/dashboard/data', { schema: { querystring: scopeQuery } }, async (req) => {
    const routes = manager.compiled.routes;
    const store = manager.store;
    const [registry, pools, depth, cluster] = await Promise.all([
      manager.metrics(),
      manager.pools(),
      routes.some((r) => r.action.kind === 'defer')
        ? (queue()
            ?.depth()
            .catch(() => null) ?? Promise.resolve(null))
        : Promise.resolve(null),
      // Issue 16: the instance registry; with PostgreSQL away, an empty list that says so.
      store === null
        ? null
        : clusterView(manager).catch(() => ({
            store: { available: false, version: manager.storeVersion },
            self: store.id,
            instances: [],
          })),
    ]);
    const json = registry === null ? [] : ((await registry.getMetricsAsJSON()) as Json[]);
    let counters = routeCounters(
      json,
      routes.map((r) => r.id),
    );
    const live = liveTotals(json);
    let queueDepth = depth;
    // Issue 16 item 3: the same shapes, summed over the instances that are up; with the
    // store away, this instance's (the answer says which scope it is).
    const all = req.query.scope === 'cluster' ? await clusterFigures(manager, queue).catch(() => null) : null;
    const scope: Scope = all === null ? 'instance' : 'cluster';
    if (all !== null) {
      counters = sumRoutes(all, routes.map((r) => r.id));
      const summed = new Map(sumDetail(all).map((t) => [`${t.pool}\u0000${t.id}`, t]));
      for (const p of pools) p.targets = p.targets.map((t) => summed.get(`${p.name}\u0000${t.id}`) ?? t);
      queueDepth = depth === null ? null : (sumDepth(all) ?? depth);
    }
    return {
      now: Date.now(),
      scope,
      manifold: { version: VERSION, config_version: manager.version, workers: manager.workers },
      // Issue 17: sessions (downstream connections) and bytes, cumulative; the page makes the rates.
      live: { sessions: live.sessions, open: live.open, bytes_in: live.bytesIn, bytes_out: live.bytesOut },
      routes: routes.map((r): RouteLive => {
        const c = counters.get(r.id)!;
        const a = r.action;
        return {
          id: r.id,
          action: a.kind,
          pool: a.kind === 'proxy' ? a.pool : a.kind === 'defer' ? a.spec.pool : a.kind === 'connect' ? a.pool : null,
          requests: c.requests,
          errors: c.errors,
          duration: { le: c.le, counts: c.counts, count: c.count },
        };
      }),
      pools,
      cluster,
      queue:
        queueDepth === null
          ? null
          : withDeferRoutes(
              queueDepth,
              routes.filter((r) => r.action.kind === 'defer').map((r) => r.id),
            ),
    };
  });
};

/** Every defer route gets a row, jobs or not; rows of routes no longer served are kept (jobs remain). */
function withDeferRoutes(depth: RouteDepth[], ids: readonly string[]): RouteDepth[] {
  const rows = new Map(depth.map((d) => [d.route, d]));
  for (const id of ids) if (!rows.has(id)) rows.set(id, emptyDepth(id));
  return sortByRoute([...rows.values()]);
}
