/**
 * Cluster-wide figures (issue 16 item 3): what each instance publishes in its heartbeat row
 * (cluster/store.ts), summed for `?scope=cluster` on `/stats`, `/stats/detail`, `/queue` and
 * `/dashboard/data`. The answering instance uses its own figures of now, the others their
 * last heartbeat (at most `cluster.heartbeat` old); instances listed as gone are left out,
 * their counters being frozen. Without `cluster.store` the cluster is this instance alone.
 *
 * Not summed: latency quantiles (a sum of p99s means nothing: they are null in cluster scope;
 * Prometheus, with an `instance` label per scrape, is the place for cluster latency) and a
 * target's state (each instance checks health itself: the answering one's view is shown).
 */
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { MetricObjectWithValues, MetricValue, MetricValueWithName } from 'prom-client';
import type { Manager, TargetView } from '../cluster/manager.ts';
import { databaseOf, postgresUrl } from '../defer/pg-conn.ts';
import { JOB_STATE_LIST, type Queue, type RouteDepth, sortByRoute, emptyDepth } from '../defer/queue.ts';
import { DURATION_BUCKETS } from '../observability/metrics.ts';
import type { RouteLive } from './routes/live.ts';

export type Scope = 'instance' | 'cluster';

export type RouteFigures = RouteLive['duration'] & { requests: number; errors: number };
export type Json = MetricObjectWithValues<MetricValue<string> | MetricValueWithName<string>>;

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


/** What one instance publishes (besides the versions the store keeps in columns). */
export interface Figures {
  stats: { downstream: { success: number; failed: number }; upstream: { success: number; failed: number }; workers: number };
  detail: TargetView[];
  routes: Record<string, RouteFigures>;
  /** Its queue (an identity, so a queue that instances share is counted once) and depth. */
  queue: { id: string; depth: RouteDepth[] } | null;
}

/** Where this instance's queue lives: PostgreSQL's database and schema, or this host's file. */
function queueId(manager: Manager): string {
  const q = manager.config.queue;
  if (q.driver === 'postgres' && q.url) return `postgres:${databaseOf(postgresUrl(q.url))}/${q.schema}`;
  return `sqlite:${hostname()}:${resolve(q.path)}`;
}

/** This instance's figures now (also its heartbeat content). */
export async function localFigures(manager: Manager, queue: () => Queue | null): Promise<Figures> {
  const routes = manager.compiled.routes;
  const defers = routes.some((r) => r.action.kind === 'defer');
  const [stats, detail, registry, depth] = await Promise.all([
    manager.stats(),
    manager.statsDetail(),
    manager.metrics(),
    defers ? (queue()?.depth().catch(() => null) ?? Promise.resolve(null)) : Promise.resolve(null),
  ]);
  const counters = routeCounters(
    registry === null ? [] : ((await registry.getMetricsAsJSON()) as Json[]),
    routes.map((r) => r.id),
  );
  return {
    stats: stats as unknown as Figures['stats'],
    detail,
    routes: Object.fromEntries(counters),
    queue: depth === null ? null : { id: queueId(manager), depth },
  };
}

/** Figures of every instance that is up: this one's now, the others' last heartbeat. */
export async function clusterFigures(manager: Manager, queue: () => Queue | null): Promise<Figures[]> {
  const own = await localFigures(manager, queue);
  const store = manager.store;
  if (store === null) return [own];
  const others = (await store.instances())
    .filter((i) => !i.self && i.state === 'up')
    .map((i) => i.report as unknown as Partial<Figures>)
    .filter((r): r is Figures => typeof r.stats === 'object' && Array.isArray(r.detail));
  return [own, ...others];
}

const add = (a: { success: number; failed: number }, b?: { success?: number; failed?: number }) => {
  a.success += b?.success ?? 0;
  a.failed += b?.failed ?? 0;
};

/** `/stats` summed. */
export function sumStats(all: readonly Figures[]) {
  const downstream = { success: 0, failed: 0 };
  const upstream = { success: 0, failed: 0 };
  let workers = 0;
  for (const f of all) {
    add(downstream, f.stats.downstream);
    add(upstream, f.stats.upstream);
    workers += f.stats.workers ?? 0;
  }
  return { downstream, upstream, workers, instances: all.length };
}

const COUNTERS = ['requests', 'failures', 'cancelled', 'inflight', 'ejected_workers', 'ejections'] as const;

/** Per-target counters summed by pool and id; state, URL and weight as the first (this) instance sees them. */
export function sumDetail(all: readonly Figures[]): TargetView[] {
  const out = new Map<string, TargetView>();
  for (const f of all)
    for (const t of f.detail) {
      const key = `${t.pool}\u0000${t.id}`;
      const seen = out.get(key);
      if (seen === undefined) {
        out.set(key, { ...t, latency_ms: { p50: null, p99: null } });
        continue;
      }
      for (const c of COUNTERS) seen[c] += Number(t[c]) || 0;
    }
  return [...out.values()];
}

/** Queue depth summed over distinct queues (one shared PostgreSQL queue counts once). */
export function sumDepth(all: readonly Figures[]): RouteDepth[] | null {
  const queues = new Map<string, RouteDepth[]>();
  for (const f of all) if (f.queue !== null && !queues.has(f.queue.id)) queues.set(f.queue.id, f.queue.depth);
  if (queues.size === 0) return null;
  const byRoute = new Map<string, RouteDepth>();
  for (const depth of queues.values())
    for (const d of depth) {
      let sum = byRoute.get(d.route);
      if (sum === undefined) byRoute.set(d.route, (sum = emptyDepth(d.route)));
      for (const s of JOB_STATE_LIST) sum[s] += d[s] ?? 0;
    }
  return sortByRoute([...byRoute.values()]);
}

/** Route answers and duration buckets summed (the same buckets everywhere: one build). */
export function sumRoutes(all: readonly Figures[], ids: readonly string[]): Map<string, RouteFigures> {
  const out = new Map<string, RouteFigures>();
  for (const id of ids) {
    const first = all[0].routes[id];
    const sum: RouteFigures = { ...first, counts: [...first.counts] };
    for (const f of all.slice(1)) {
      const r = f.routes?.[id];
      if (!r || r.counts.length !== sum.counts.length) continue;
      sum.requests += r.requests;
      sum.errors += r.errors;
      sum.count += r.count;
      r.counts.forEach((n, i) => (sum.counts[i] += n));
    }
    out.set(id, sum);
  }
  return out;
}
