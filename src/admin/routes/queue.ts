/**
 * The queue of `defer` routes (issue 6): depth per route and state, jobs and dead letters
 * (list and inspect), retry one or every dead letter, delete a job. Served by the process that
 * delivers (the primary, or the only one); 503 QUEUE_UNAVAILABLE while no route defers.
 */
import type { FastifyInstance } from 'fastify';
import type { Manager } from '../../cluster/manager.ts';
import { emptyDepth, type Job, type JobState, type Queue } from '../../defer/queue.ts';
import { clusterFigures, type Scope, sumDepth } from '../scope.ts';
import { GatewayError } from '../../errors.ts';
import { deadListQuery, jobListQuery, jobParams, queueDepthQuery, retryAllQuery } from '../schemas.ts';

type ListQuery = { route?: string; state?: JobState; limit?: string; after?: string };

const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A job without its request: what lists show. */
function summary(job: Job) {
  return {
    id: job.id,
    route: job.route,
    state: job.state,
    method: job.method,
    url: job.url,
    attempts: job.attempts,
    max_attempts: job.maxAttempts,
    last_error: job.lastError,
    idempotency_key: job.idempotencyKey,
    body_bytes: job.body.length,
    run_at: iso(job.runAt),
    lease_until: iso(job.leaseUntil),
    // Issue 16: the gateway (`queue.instance`) that claimed it last: who holds an inflight job.
    claimed_by: job.claimedBy,
    created_at: iso(job.createdAt),
    updated_at: iso(job.updatedAt),
  };
}

/** A job with its stored request; the body is base64 (it may be binary). */
function detail(job: Job) {
  return { ...summary(job), headers: job.headers, body: job.body.toString('base64') };
}

/** `manager`: for `GET /queue?scope=cluster` (issue 16); the dashboard's copy has none. */
export const queueRoutes = (queue: () => Queue | null, manager?: Manager) => async (app: FastifyInstance) => {
  const open = (): Queue => {
    const q = queue();
    if (q === null) throw new GatewayError('QUEUE_UNAVAILABLE', 'no route defers: the queue is not open');
    return q;
  };
  const page = async (q: ListQuery, state: JobState | undefined) => {
    const limit = Math.min(MAX_PAGE, Math.max(1, q.limit === undefined ? DEFAULT_PAGE : Number(q.limit)));
    const jobs = await open().list({ route: q.route, state, limit, after: q.after });
    return { jobs: jobs.map(summary), next: jobs.length === limit ? jobs[jobs.length - 1].id : null };
  };
  const found = async (id: string): Promise<Job> => {
    const job = await open().get(id);
    if (job === null) throw new GatewayError('NOT_FOUND', `no job "${id}"`, { details: { id } });
    return job;
  };

  app.get<{ Querystring: { route?: string; scope?: Scope } }>(
    '/queue',
    { schema: { querystring: queueDepthQuery } },
    async (req) => {
      const { route, scope } = req.query;
      if (scope !== 'cluster' || manager === undefined) return { routes: await open().depth(route) };
      open();
      // Summed over distinct queues: one that instances share on PostgreSQL counts once.
      const routes = (sumDepth(await clusterFigures(manager, queue)) ?? []).filter(
        (d) => route === undefined || d.route === route,
      );
      return { routes: route !== undefined && routes.length === 0 ? [emptyDepth(route)] : routes, scope };
    },
  );

  app.get<{ Querystring: ListQuery }>('/queue/jobs', { schema: { querystring: jobListQuery } }, async (req) =>
    page(req.query, req.query.state),
  );

  app.get<{ Params: { id: string } }>('/queue/jobs/:id', { schema: { params: jobParams } }, async (req) => ({
    job: detail(await found(req.params.id)),
  }));

  app.delete<{ Params: { id: string } }>(
    '/queue/jobs/:id',
    { schema: { params: jobParams } },
    async (req) => {
      if (!(await open().delete(req.params.id)))
        throw new GatewayError('NOT_FOUND', `no job "${req.params.id}"`, { details: { id: req.params.id } });
      return { deleted: req.params.id };
    },
  );

  app.get<{ Querystring: ListQuery }>(
    '/queue/dead',
    { schema: { querystring: deadListQuery } },
    async (req) => page(req.query, 'dead'),
  );

  app.post<{ Params: { id: string } }>(
    '/queue/dead/:id/retry',
    { schema: { params: jobParams } },
    async (req) => {
      const { id } = req.params;
      if (!(await open().retryDead(id))) {
        const job = await found(id);
        throw new GatewayError('CONFLICT', `job "${id}" is ${job.state}, not a dead letter`, {
          details: { id, state: job.state },
        });
      }
      return { retried: 1, job: summary(await found(id)) };
    },
  );

  app.post<{ Querystring: { route?: string } }>(
    '/queue/dead/retry',
    { schema: { querystring: retryAllQuery } },
    async (req) => ({ retried: await open().retryAllDead(req.query.route) }),
  );
};
