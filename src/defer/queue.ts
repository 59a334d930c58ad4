/**
 * The durable job queue behind `defer` routes: the one public types file of this area.
 *
 * A **job** is one deferred request. The accept handler calls `enqueue()` and answers 202 only
 * after it resolves (the job is then committed to durable storage). Deliverers `claim()` jobs
 * with a lease, send them, then `complete()` or `fail()` them; a job that runs out of attempts
 * becomes a **dead letter** (`state: 'dead'`) until an operator retries or deletes it.
 *
 * Delivery is at-least-once: a deliverer that outlives its lease (crash, stall, a renewal that
 * could not reach the store) lets another claimer take the job again, so a target can see the
 * same job twice. Leases are short and renewed while a delivery runs (`renew()`, issue 16 item
 * 6): a killed gateway's jobs are free again within one lease, and a restarted one frees its own
 * at once (`releaseOwn()`), because every claim records who made it (`instance`). Leases are
 * compared with the store's clock (`Date.now()` of the calling process): across machines,
 * keep clocks in sync and leases far longer than the skew.
 *
 * Two stores implement `Queue` (and one contract suite, test/contract/queue.test.ts, runs
 * against both): `SqliteQueue` (sqlite-queue.ts, the default, one file shared by the
 * processes of one machine) and `PgQueue` (pg-queue.ts, shared by many gateways).
 */

import { randomBytesPooled, uuidText } from '../random.ts';

/** The life of a job: pending → inflight → done, or back to pending (retry), or dead. */
export const JOB_STATES = Object.freeze({
  /** Waiting for `runAt`; claimable once `runAt <= now`. */
  pending: 'pending',
  /** Claimed by a deliverer until `leaseUntil`; claimable again after that. */
  inflight: 'inflight',
  /** Delivered (kept until deleted: it also remembers its idempotency key). */
  done: 'done',
  /** Dead letter: out of attempts or failed permanently; see `lastError`. */
  dead: 'dead',
} as const);

export type JobState = (typeof JOB_STATES)[keyof typeof JOB_STATES];

/** Every state, in life order; handy for iterating and validating. */
export const JOB_STATE_LIST: readonly JobState[] = Object.freeze(Object.values(JOB_STATES));

/** Header lines in arrival order, duplicates kept (`set-cookie`, repeated `x-forwarded-for`). */
export type HeaderPairs = Array<[name: string, value: string]>;

/** What the accept handler hands to `enqueue()`. */
export interface JobInput {
  /**
   * A pre-assigned id from `newJobId()`. Default: a new one. The accept handler sets it when a
   * direct delivery (overflow mode) failed and the job is queued after it, so the receiver sees
   * one `x-manifold-job-id` for both and can de-duplicate.
   */
  id?: string | undefined;
  /** Id of the route that deferred the request (from config, never a raw path). */
  route: string;
  method: string;
  /** Path and query to send to the target, e.g. `/hooks/github?x=1`. */
  url: string;
  headers: ReadonlyArray<readonly [string, string]>;
  /** The complete request body (already bounded by the handler); may be empty. */
  body: Uint8Array;
  /**
   * Unique per route while the job exists: enqueuing again with the same key returns the
   * first job's id with `duplicate: true` and stores nothing.
   */
  idempotencyKey?: string | undefined;
  /** Attempts before the job becomes a dead letter; an integer ≥ 1. */
  maxAttempts: number;
  /** First eligible time, ms since the epoch. Default: now. */
  runAt?: number | undefined;
}

/** One stored job, as `claim()`, `get()` and `list()` return it. */
export interface Job {
  /** UUIDv7: unique, and sorts by creation time. */
  id: string;
  route: string;
  method: string;
  url: string;
  headers: HeaderPairs;
  body: Buffer;
  idempotencyKey: string | null;
  /** Attempts started so far (each claim counts one; `release()` gives it back). */
  attempts: number;
  maxAttempts: number;
  state: JobState;
  /** Next eligible time while pending, ms since the epoch. */
  runAt: number;
  /** While inflight: when the lease expires and the job may be claimed again. */
  leaseUntil: number | null;
  /** The error of the latest failed attempt (bounded to `LAST_ERROR_MAX` characters). */
  lastError: string | null;
  /** The `instance` of the queue that claimed the job last (null: never claimed since issue 16). */
  claimedBy: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface EnqueueResult {
  id: string;
  /** True when the idempotency key already existed: `id` is the first job's. */
  duplicate: boolean;
}

/** Job counts of one route, by state (`pending` includes retries scheduled for later). */
export type RouteDepth = { route: string } & Record<JobState, number>;

export interface ListQuery {
  route?: string | undefined;
  state?: JobState | undefined;
  /** Page size, 1 to `LIST_LIMIT_MAX`. */
  limit: number;
  /** Cursor: return jobs whose id sorts after this one (the last id of the previous page). */
  after?: string | undefined;
}

export interface WaitOptions {
  /** Resolve `false` after this long even without a wake-up (catches scheduled retries). */
  maxWaitMs: number;
  signal?: AbortSignal | undefined;
}

/** Counters for metrics and tests; cheap to read. */
export interface QueueStats {
  /** Write transactions this instance committed (one per enqueue batch, claim, fail, ...). */
  commits: number;
  /** Jobs committed by `enqueue()` (duplicates not counted). */
  enqueued: number;
  /** `enqueue()` calls accepted but not yet committed (bounded by the store's `maxWaiting`). */
  waiting: number;
}

export interface Queue {
  /**
   * Who claims through this queue (issue 16 item 6): stored with every claim, so `renew`,
   * `complete`, `fail` and `releaseOwn` act only on this instance's jobs. Stable across restarts
   * when the gateway gives one (`queue.instance`), unique per process otherwise.
   */
  readonly instance: string;
  /**
   * Store a job. Resolves only after a durable commit (concurrent calls share one commit).
   * Rejects with `GatewayError('QUEUE_UNAVAILABLE')` when the store cannot take it (closed,
   * overloaded, commit failed: the caller answers 503), with TypeError for invalid input.
   */
  enqueue(job: JobInput): Promise<EnqueueResult>;
  /**
   * Atomically claim up to `limit` eligible jobs of `route` — pending with `runAt <= now`, or
   * inflight with an expired lease — marking them inflight until `now + leaseMs` and counting
   * one attempt each. No two claimers, in any process, get the same job under the same lease.
   * An expired job that has already used all its attempts becomes dead instead
   * (`lastError: 'lease expired'`): a job that crashes its deliverer cannot loop forever.
   * The claimed jobs record `instance` as `claimedBy`.
   */
  claim(route: string, limit: number, leaseMs: number): Promise<Job[]>;
  /**
   * The heartbeat of deliveries in flight: extend the leases of these jobs to `now + leaseMs`,
   * for the ones still inflight and claimed by this instance (even if their lease ran out and
   * nobody took them yet). Returns the ids renewed; a missing id is no longer ours (another
   * instance claimed it after our lease expired, or it was deleted): its outcome is theirs.
   */
  renew(ids: readonly string[], leaseMs: number): Promise<string[]>;
  /**
   * Mark an inflight job of this instance delivered. False if it is not inflight, or was
   * claimed by another instance since (our lease expired). Concurrent calls share one commit,
   * as enqueues do: one fsync per batch, not per delivery.
   */
  complete(id: string): Promise<boolean>;
  /**
   * Record a failed attempt of an inflight job of this instance. With `retryAt` (ms epoch) and
   * attempts left, the job goes back to pending at `retryAt`; with `retryAt === null` (permanent
   * failure) or no attempts left it becomes dead. Returns the new state, or null if the job is
   * not inflight or not ours any more.
   */
  fail(id: string, error: string, retryAt: number | null): Promise<JobState | null>;
  /**
   * Give leases back without counting the attempt (graceful shutdown): inflight → pending,
   * eligible at once. Returns how many jobs were released.
   */
  release(ids: readonly string[]): Promise<number>;
  /**
   * `release` for every inflight job claimed under this `instance` (any route): what a gateway
   * calls at start, before it claims, to free at once the deliveries its previous life had in
   * flight when it was killed, instead of waiting for their leases. Only safe when no other
   * live process uses the same `instance`. Returns how many jobs were released.
   */
  releaseOwn(): Promise<number>;
  /** Counts by state for one route (a zero row if it has no jobs) or for every route with jobs. */
  depth(route?: string): Promise<RouteDepth[]>;
  /** Jobs in id (creation) order, filtered, one page at a time. */
  list(query: ListQuery): Promise<Job[]>;
  get(id: string): Promise<Job | null>;
  /** Dead → pending now, attempts reset to 0 (`lastError` kept for history). False if not dead. */
  retryDead(id: string): Promise<boolean>;
  /** `retryDead` for every dead job (of one route); returns how many. */
  retryAllDead(route?: string): Promise<number>;
  /** Remove a job in any state. False if it did not exist. */
  delete(id: string): Promise<boolean>;
  /**
   * Remove up to `limit` done jobs last updated before `before` (ms epoch); returns how many.
   * Done jobs are kept until then because they remember their idempotency key (the janitor,
   * janitor.ts, calls this; dead letters are never purged: an operator decides).
   */
  purge(before: number, limit: number): Promise<number>;
  /**
   * Wait cheaply until new work may be available for `route` (an enqueue, retry or release,
   * in this or another process), `maxWaitMs` passes, the signal aborts or the store closes.
   * True means "woken: claim now"; wake-ups may be spurious. A wake-up that happened after
   * this instance's last `claim(route)` resolves at once, so the claim-then-wait loop of a
   * deliverer cannot miss one. Never rejects.
   */
  waitForWork(route: string, options: WaitOptions): Promise<boolean>;
  stats(): QueueStats;
  /**
   * Whether the store answers in time (issue 15): false for a while after a call waited past
   * `commitTimeoutMs`, or once closed. The admin API's `GET /ready` reports it.
   */
  health(): { ok: boolean; reason?: string };
  /** One round trip to the store; rejects with `QUEUE_UNAVAILABLE` past `commitTimeoutMs`. */
  ping(): Promise<void>;
  /**
   * Commit enqueues already accepted, then stop timers and listeners and close the
   * database. Later calls reject with `QUEUE_UNAVAILABLE`. Idempotent.
   */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Limits and helpers shared by the store implementations.

/** `lastError` is truncated to this many characters: a target's error body is client-controlled. */
export const LAST_ERROR_MAX = 2000;
/** Largest `list()` page. */
export const LIST_LIMIT_MAX = 1000;
/** Largest `claim()` batch. */
export const CLAIM_LIMIT_MAX = 1000;
/** Longest idempotency key, in characters (it is indexed). */
export const IDEMPOTENCY_KEY_MAX = 256;
/** Largest `purge()` batch: a delete this size holds SQLite's write lock for a few ms only. */
export const PURGE_LIMIT_MAX = 10_000;
/** A job id as `newJobId()` writes it (any UUID version is accepted). */
export const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A store constructor got a bad option; `option` names it. */
export class QueueOptionError extends TypeError {
  readonly code = 'QUEUE_INVALID_OPTION';
  readonly option: string;

  constructor(option: string, expected: string, actual: unknown) {
    super(`invalid queue option "${option}": expected ${expected}, got ${describe(actual)}`);
    this.name = 'QueueOptionError';
    this.option = option;
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

/** Read an optional integer option in [min, max], with its default. */
export function intOption(options: object, name: string, min: number, max: number, fallback: number): number {
  const value = (options as Record<string, unknown>)[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new QueueOptionError(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** Check an `enqueue()` input; throws TypeError naming the field. */
export function checkJobInput(job: JobInput): void {
  if (typeof job !== 'object' || job === null) throw new TypeError('job must be an object');
  for (const name of ['route', 'method', 'url'] as const) {
    if (typeof job[name] !== 'string' || job[name] === '')
      throw new TypeError(`job.${name} must be a non-empty string`);
  }
  if (!Array.isArray(job.headers) || !job.headers.every(isHeaderPair)) {
    throw new TypeError('job.headers must be an array of [name, value] string pairs');
  }
  if (!(job.body instanceof Uint8Array)) throw new TypeError('job.body must be a Buffer or Uint8Array');
  if (job.id !== undefined && (typeof job.id !== 'string' || !JOB_ID.test(job.id))) {
    throw new TypeError('job.id must be a job id from newJobId()');
  }
  const key = job.idempotencyKey;
  if (key !== undefined && (typeof key !== 'string' || key === '' || key.length > IDEMPOTENCY_KEY_MAX)) {
    throw new TypeError(`job.idempotencyKey must be a string of 1 to ${IDEMPOTENCY_KEY_MAX} characters`);
  }
  if (!Number.isInteger(job.maxAttempts) || job.maxAttempts < 1) {
    throw new TypeError('job.maxAttempts must be an integer >= 1');
  }
  if (job.runAt !== undefined && !Number.isFinite(job.runAt))
    throw new TypeError('job.runAt must be a finite number');
}

function isHeaderPair(pair: unknown): boolean {
  return (
    Array.isArray(pair) && pair.length === 2 && typeof pair[0] === 'string' && typeof pair[1] === 'string'
  );
}

/** Check `claim()` arguments (the same rules for every store). */
export function checkClaim(route: string, limit: number, leaseMs: number): void {
  if (typeof route !== 'string' || route === '') throw new TypeError('route must be a non-empty string');
  if (!Number.isInteger(limit) || limit < 1 || limit > CLAIM_LIMIT_MAX) {
    throw new RangeError(`limit must be an integer from 1 to ${CLAIM_LIMIT_MAX}`);
  }
  if (!Number.isInteger(leaseMs) || leaseMs < 1) throw new RangeError('leaseMs must be a positive integer');
}

/** Check `purge()` arguments (the same rules for every store). */
export function checkPurge(before: number, limit: number): void {
  if (!Number.isFinite(before)) throw new TypeError('before must be a finite number');
  if (!Number.isInteger(limit) || limit < 1 || limit > PURGE_LIMIT_MAX) {
    throw new RangeError(`limit must be an integer from 1 to ${PURGE_LIMIT_MAX}`);
  }
}

/** Check `list()` arguments (the same rules for every store). */
export function checkList(query: ListQuery): void {
  if (!Number.isInteger(query.limit) || query.limit < 1 || query.limit > LIST_LIMIT_MAX) {
    throw new RangeError(`limit must be an integer from 1 to ${LIST_LIMIT_MAX}`);
  }
  if (query.state !== undefined && !JOB_STATE_LIST.includes(query.state)) {
    throw new TypeError(`state must be one of ${JOB_STATE_LIST.join(', ')}`);
  }
}

export function truncateError(error: string): string {
  const text = typeof error === 'string' ? error : String(error);
  return text.length > LAST_ERROR_MAX ? text.slice(0, LAST_ERROR_MAX) : text;
}

let lastMs = 0;
let seq = 0;

/**
 * A new job id: a UUIDv7 (RFC 9562) — 48 bits of ms timestamp, then a 12-bit counter
 * (method 1 of §6.2) so ids from one process sort in creation order even within one ms,
 * then 62 random bits so ids from different processes never collide.
 */
export function newJobId(now = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    seq = randomBytesPooled(1)[0]; // start low and random: leaves room to count up within the ms
  } else if (++seq > 0xfff) {
    // 4096 ids in one ms: borrow the next ms rather than break the order.
    lastMs++;
    seq = 0;
  }
  const bytes = Buffer.allocUnsafe(16);
  randomBytesPooled(8).copy(bytes, 8);
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | (seq >> 8);
  bytes[7] = seq & 0xff;
  bytes[8] = 0x80 | (bytes[8] & 0x3f);
  return uuidText(bytes);
}

/** The row both stores insert for a job: validated, with its id and run time settled. */
export interface NewRow {
  id: string;
  route: string;
  method: string;
  url: string;
  /** JSON of the header pairs. */
  headers: string;
  body: Uint8Array;
  key: string | null;
  maxAttempts: number;
  runAt: number;
}

/** Validates a job and turns it into its row; throws the store's closed error when closed. */
export function newRow(job: JobInput, now: number, closed: boolean, closedError: () => Error): NewRow {
  checkJobInput(job);
  if (closed) throw closedError();
  return {
    id: job.id ?? newJobId(now),
    route: job.route,
    method: job.method,
    url: job.url,
    headers: JSON.stringify(job.headers),
    body: job.body,
    key: job.idempotencyKey ?? null,
    maxAttempts: job.maxAttempts,
    runAt: Math.round(job.runAt ?? now),
  };
}

/** Zero counts for one route. */
export function emptyDepth(route: string): RouteDepth {
  return { route, pending: 0, inflight: 0, done: 0, dead: 0 };
}

/** Fold `(route, state, count)` rows into one `RouteDepth` per route, sorted by route. */
export function foldDepth(
  rows: Iterable<{ route: string; state: string; n: number }>,
  route?: string,
): RouteDepth[] {
  const byRoute = new Map<string, RouteDepth>();
  if (route !== undefined) byRoute.set(route, emptyDepth(route));
  for (const row of rows) {
    let depth = byRoute.get(row.route);
    if (depth === undefined) byRoute.set(row.route, (depth = emptyDepth(row.route)));
    if (JOB_STATE_LIST.includes(row.state as JobState)) depth[row.state as JobState] = Number(row.n);
  }
  return sortByRoute([...byRoute.values()]);
}

/** Depth rows in route order (sorts in place). */
export function sortByRoute(rows: RouteDepth[]): RouteDepth[] {
  return rows.sort((a, b) => (a.route < b.route ? -1 : a.route > b.route ? 1 : 0));
}

interface Waiting<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

export interface GroupCommitOptions<T, R> {
  /** Write `items` in ONE transaction; return one result per item, in order. A throw rejects them all. */
  commit: (items: T[]) => R[] | Promise<R[]>;
  /** Most items in one transaction. */
  maxBatch: number;
  /** Most items accepted but not yet committed; `add()` beyond it rejects with `overloaded()`. */
  maxWaiting: number;
  /** Batches committing at once (1 for SQLite: one writer; a few for PostgreSQL). */
  concurrency: number;
  overloaded: () => Error;
}

/**
 * Group commit: many `add()` calls share one transaction (one fsync), and each promise
 * settles with its batch's commit.
 *
 * A batch is flushed from `setImmediate`, i.e. after the event loop has run every I/O callback
 * that was ready: everything that arrived in the same turn (or, with an async commit, while
 * the previous batch was committing) goes into one transaction. There is no fixed delay, so a
 * lone request under low load pays one loop turn, not a timer. Bounded by `maxWaiting` so an
 * overloaded store says no instead of growing memory.
 */
export class GroupCommit<T, R> {
  #options: GroupCommitOptions<T, R>;
  #queue: Array<Waiting<T, R>> = [];
  #committingItems = 0;
  #active = new Set<Promise<void>>();
  #scheduled = false;

  constructor(options: GroupCommitOptions<T, R>) {
    this.#options = options;
  }

  /** Accepted and not yet committed: queued plus committing. */
  get waiting(): number {
    return this.#queue.length + this.#committingItems;
  }

  add(item: T): Promise<R> {
    if (this.waiting >= this.#options.maxWaiting) return Promise.reject(this.#options.overloaded());
    const { promise, resolve, reject } = Promise.withResolvers<R>();
    this.#queue.push({ item, resolve, reject });
    this.#schedule();
    return promise;
  }

  /**
   * Takes back an item not yet in a commit: its promise never settles, and nothing of it is
   * written. False when it is already committing (or done): its outcome is the commit's.
   */
  withdraw(item: T): boolean {
    const i = this.#queue.findIndex((w) => w.item === item);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    return true;
  }

  /** Commit everything queued (ignoring the schedule) and wait until every batch has settled. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#active.size > 0) {
      while (this.#queue.length > 0 && this.#active.size < this.#options.concurrency) this.#flush();
      await Promise.allSettled([...this.#active]);
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#queue.length === 0 || this.#active.size >= this.#options.concurrency) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      while (this.#queue.length > 0 && this.#active.size < this.#options.concurrency) this.#flush();
    });
  }

  #flush(): void {
    const batch = this.#queue.splice(0, this.#options.maxBatch);
    this.#committingItems += batch.length;
    const done = this.#commit(batch).finally(() => {
      this.#committingItems -= batch.length;
      this.#active.delete(done);
      this.#schedule();
    });
    this.#active.add(done);
  }

  async #commit(batch: Array<Waiting<T, R>>): Promise<void> {
    try {
      const results = await this.#options.commit(batch.map((w) => w.item));
      for (let i = 0; i < batch.length; i++) batch[i].resolve(results[i]);
    } catch (err) {
      for (const w of batch) w.reject(err);
    }
  }
}

interface Waiter {
  route: string;
  wake: (woken: boolean) => void;
}

/**
 * In-process wake-ups for `Queue.waitForWork()`. A store calls `wake(route)` when it learns of
 * new work (its own commits, a NOTIFY, a change seen by polling) and `claimed(route)` when a
 * claim starts; a wait resolves at once if a wake-up happened since the last claim.
 */
export class WakeHub {
  #wakes = new Map<string, number>();
  #wakesAll = 0;
  #seen = new Map<string, number>();
  #waiters = new Set<Waiter>();
  #closed = false;

  /** How many `wait()` calls are pending (a store may poll only while someone waits). */
  get waiting(): number {
    return this.#waiters.size;
  }

  wake(route: string): void {
    this.#wakes.set(route, (this.#wakes.get(route) ?? 0) + 1);
    for (const waiter of this.#waiters) if (waiter.route === route) waiter.wake(true);
  }

  /** New work may exist on any route (a change by another process, a reconnect). */
  wakeAll(): void {
    this.#wakesAll++;
    for (const waiter of this.#waiters) waiter.wake(true);
  }

  claimed(route: string): void {
    this.#seen.set(route, this.#count(route));
  }

  wait(route: string, { maxWaitMs, signal }: WaitOptions): Promise<boolean> {
    if (this.#closed || signal?.aborted) return Promise.resolve(false);
    if (this.#count(route) > (this.#seen.get(route) ?? 0)) return Promise.resolve(true);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const onAbort = () => waiter.wake(false);
    const timer = setTimeout(() => waiter.wake(false), Math.max(0, maxWaitMs));
    const waiter: Waiter = {
      route,
      wake: (woken) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#waiters.delete(waiter);
        resolve(woken);
      },
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#waiters.add(waiter);
    return promise;
  }

  /** Resolve every wait with false; later waits resolve false at once. */
  close(): void {
    this.#closed = true;
    for (const waiter of this.#waiters) waiter.wake(false);
  }

  #count(route: string): number {
    return (this.#wakes.get(route) ?? 0) + this.#wakesAll;
  }
}
