/**
 * `GET /dashboard/data` (issue 7): what the dashboard shows, in one call. Route counters and
 * duration buckets come from the same summed metrics as `/metrics` (so the page and Prometheus
 * never disagree); pools and targets from the Manager's views (`GET /pools`); the queue depth
 * from the store. Counters are cumulative: the page turns them into rates and quantiles over
 * its own window, so this stays stateless and any number of browsers can watch.
 */
import type { FastifyInstance } from 'fastify';
import type { MetricObjectWithValues, MetricValue, MetricValueWithName } from 'prom-client';
import type { Manager } from '../../cluster/manager.ts';
import { emptyDepth, type Queue, type RouteDepth, sortByRoute } from '../../defer/queue.ts';
import { DURATION_BUCKETS } from '../../observability/metrics.ts';
import { VERSION } from '../../version.ts';
import { clusterView } from './cluster.ts';

export interface RouteLive {
  id: string;
  action: 'proxy' | 'defer' | 'multiplex' | 'respond';
  pool: string | null;
  /** Answers since start, every process. */
  requests: number;
  /** 5xx answers since start. */
  errors: number;
  /** Cumulative duration histogram (seconds): `counts[i]` answers took at most `le[i]`. */
  duration: { le: readonly number[]; counts: number[]; count: number };
}

type Json = MetricObjectWithValues<MetricValue<string> | MetricValueWithName<string>>;

/** Per route: answers, 5xx answers, and the histogram buckets, read from the summed metrics. */
export function routeCounters(
  metrics: readonly Json[],
  routeIds: readonly string[],
): Map<string, RouteLive['duration'] & { requests: number; errors: number }> {
  const out = new Map<string, RouteLive['duration'] & { requests: number; errors: number }>();
  for (const id of routeIds)
    out.set(id, {
      requests: 0,
      errors: 0,
      le: DURATION_BUCKETS,
      counts: DURATION_BUCKETS.map(() => 0),
      count: 0,
    });
  const byName = new Map(metrics.map((m) => [m.name, m]));
  for (const v of byName.get('manifold_downstream_requests_total')?.values ?? []) {
    const r = out.get(String(v.labels.route));
    if (r === undefined) continue;
    r.requests += v.value;
    if (v.labels.status_class === '5xx') r.errors += v.value;
  }
  for (const v of (byName.get('manifold_downstream_request_duration_seconds')?.values ??
    []) as MetricValueWithName<string>[]) {
    const r = out.get(String(v.labels.route));
    if (r === undefined) continue;
    if (v.metricName?.endsWith('_count')) r.count = v.value;
    else if (v.metricName?.endsWith('_bucket') && v.labels.le !== '+Inf') {
      const i = DURATION_BUCKETS.indexOf(Number(v.labels.le));
      if (i !== -1) r.counts[i] = v.value;
    }
  }
  return out;
}

export const liveRoutes = (manager: Manager, queue: () => Queue | null) => async (app: FastifyInstance) => {
  app.get('/dashboard/data', async () => {
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
    const counters = routeCounters(
      registry === null ? [] : ((await registry.getMetricsAsJSON()) as Json[]),
      routes.map((r) => r.id),
    );
    return {
      now: Date.now(),
      manifold: { version: VERSION, config_version: manager.version, workers: manager.workers },
      routes: routes.map((r): RouteLive => {
        const c = counters.get(r.id)!;
        const a = r.action;
        return {
          id: r.id,
          action: a.kind,
          pool: a.kind === 'proxy' ? a.pool : a.kind === 'defer' ? a.spec.pool : null,
          requests: c.requests,
          errors: c.errors,
          duration: { le: c.le, counts: c.counts, count: c.count },
        };
      }),
      pools,
      cluster,
      queue:
        depth === null
          ? null
          : withDeferRoutes(
              depth,
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
