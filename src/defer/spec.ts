/**
 * A `defer` route's settings and the `queue` block, compiled once at config time (STYLE.md §5):
 * durations parsed, rates turned into per-second numbers, the `success` list into a status
 * table. config/compile.ts calls these; the accept handler and the deliverers only read the
 * result.
 */
import type { CompileProblem } from '../lib/problem.ts';
import { statusTable } from '../lib/statuses.ts';
import { type Duration, parseDuration, parseSize, type Size } from '../lib/units.ts';
import type { HostMode } from '../proxy/headers.ts';
import type { Route } from '../routing/route.ts';
import type { BackoffPolicy } from './backoff.ts';
import { postgresUrl } from './pg-conn.ts';

type Path = Array<string | number>;

// ---- as validated (config/schema.ts `deferSchema` and `queue`, defaults applied) ----

export interface DeferConfig {
  pool: string;
  status: number;
  body: 'id' | 'empty';
  host: string;
  max_attempts: number;
  rate: string | null;
  concurrency: number;
  success: Array<number | string>;
  backoff: { base: Duration; max: Duration; jitter: 'full' | 'decorrelated' | 'none' };
  lease: Duration;
  max_body_bytes: Size;
  overflow?: { rate: string; burst?: number };
}

export interface QueueConfig {
  driver: 'sqlite' | 'postgres';
  path: string;
  url: string | null;
  schema: string;
  pool_size: number;
  busy_timeout: Duration;
  max_waiting: number;
  commit_timeout: Duration;
  retention: Duration | null;
  janitor_interval: Duration;
  instance: string | null;
}

// ---- compiled ----

export interface DeferSpec {
  readonly pool: string;
  /** Status of the answer once the job is stored (2xx-5xx). */
  readonly status: number;
  /** `empty`: the answer has no body (asyncproxy's); `id`: `{"id"}`. */
  readonly body: 'id' | 'empty';
  readonly host: HostMode;
  readonly maxAttempts: number;
  /** Deliveries started per second by one delivering process; null = no limit. */
  readonly ratePerSecond: number | null;
  readonly concurrency: number;
  /** Statuses that complete a job, one byte per status (1 = success). */
  readonly success: Uint8Array;
  readonly backoff: BackoffPolicy;
  readonly leaseMs: number;
  readonly maxBodyBytes: number;
  /**
   * Overflow mode: direct deliveries per second per accepting process; null = always queue;
   * Infinity = always direct (failures are queued).
   */
  readonly overflowPerSecond: number | null;
  /** Overflow token bucket size; null = the limiter's default (a tenth of a second). */
  readonly overflowBurst: number | null;
}

/** A defer route's action in the compiled config (config/compile.ts `RouteAction`). */
export interface DeferAction {
  readonly kind: 'defer';
  readonly spec: DeferSpec;
}

/** A defer route as served: what accept, delivery and the deliverers read. */
export type DeferRoute = Route<DeferAction>;

/** Whether a served route defers. */
export const isDeferRoute = (route: Route): route is DeferRoute => route.action.kind === 'defer';

export interface QueueSpec {
  readonly driver: 'sqlite' | 'postgres';
  readonly path: string;
  readonly url: string | null;
  readonly schema: string;
  readonly poolSize: number;
  readonly busyTimeoutMs: number;
  readonly maxWaiting: number;
  /** `queue.commit_timeout`: 0 = unbounded. */
  readonly commitTimeoutMs: number;
  /** Delivered jobs older than this are purged; null = kept forever. */
  readonly retentionMs: number | null;
  readonly janitorIntervalMs: number;
  /** `queue.instance`; null = derived from the listen address (open.ts `instanceName`). */
  readonly instance: string | null;
}

const RATE = /^(\d+(?:\.\d+)?)\/(s|m|h)$/;
const PER = { s: 1, m: 60, h: 3600 } as const;

/** `100/s` → 100, `30/m` → 0.5: events per second. */
export function parseRate(text: string): number {
  const m = RATE.exec(text);
  if (!m) throw new Error(`not a rate: ${JSON.stringify(text)} (use e.g. 100/s, 20/m)`);
  return Number(m[1]) / PER[m[2] as keyof typeof PER];
}

/**
 * The route's `timeout` bounds each delivery. The lease no longer has to outlast it (issue 16
 * item 6): the deliverer renews it every third of a lease while the delivery runs, so only a
 * gateway that stops renewing (killed, stalled, cut off from its store) loses its jobs, and a
 * short lease makes them heal fast. 1s is the floor: renewals every 333 ms are the most we ask
 * of the store.
 */
export function compileDefer(
  d: DeferConfig,
  path: Path,
  problems: CompileProblem[],
): DeferSpec {
  const rateOf = (value: string | null | undefined, key: Path): number | null => {
    if (value === null || value === undefined) return null;
    const perSecond = parseRate(value);
    if (perSecond <= 0) problems.push({ path: [...path, ...key], message: 'must be more than 0' });
    return perSecond;
  };
  const baseMs = parseDuration(d.backoff.base);
  const maxMs = parseDuration(d.backoff.max);
  const leaseMs = parseDuration(d.lease);
  if (baseMs <= 0) problems.push({ path: [...path, 'backoff', 'base'], message: 'must be more than 0' });
  if (maxMs < baseMs)
    problems.push({ path: [...path, 'backoff', 'max'], message: 'must be at least backoff.base' });
  if (leaseMs < 1000) problems.push({ path: [...path, 'lease'], message: 'must be at least 1s' });
  const success = statusTable(d.success, 'exact', (i, message) =>
    problems.push({ path: [...path, 'success', i], message }),
  );
  const host = d.host;
  return {
    pool: d.pool,
    status: d.status,
    body: d.body,
    host: host === 'preserve' || host === 'target' ? host : { literal: host },
    maxAttempts: d.max_attempts,
    ratePerSecond: rateOf(d.rate, ['rate']),
    concurrency: d.concurrency,
    success,
    backoff: { baseMs, maxMs, jitter: d.backoff.jitter },
    leaseMs,
    maxBodyBytes: parseSize(d.max_body_bytes),
    overflowPerSecond:
      d.overflow?.rate === 'unlimited' ? Number.POSITIVE_INFINITY : rateOf(d.overflow?.rate, ['overflow', 'rate']),
    overflowBurst: d.overflow?.burst ?? null,
  };
}

export function compileQueue(q: QueueConfig, problems: CompileProblem[]): QueueSpec {
  if (q.driver === 'postgres' && !q.url)
    problems.push({ path: ['queue', 'url'], message: 'is required with driver postgres' });
  let url: string | null = null;
  if (q.url)
    try {
      url = postgresUrl(q.url);
    } catch (err) {
      problems.push({ path: ['queue', 'url'], message: (err as Error).message });
    }
  const intervalMs = parseDuration(q.janitor_interval);
  if (intervalMs < 1000)
    problems.push({ path: ['queue', 'janitor_interval'], message: 'must be at least 1s' });
  return {
    driver: q.driver,
    path: q.path,
    url,
    schema: q.schema,
    poolSize: q.pool_size,
    busyTimeoutMs: parseDuration(q.busy_timeout),
    maxWaiting: q.max_waiting,
    commitTimeoutMs: parseDuration(q.commit_timeout),
    retentionMs: q.retention === null ? null : parseDuration(q.retention),
    janitorIntervalMs: intervalMs,
    instance: q.instance,
  };
}
