/**
 * The one queue core (issue 11): everything a `Queue` does that is not SQL. A store is this
 * class plus a dialect — the statements of one database, given as the `protected abstract`
 * methods below — so the two stores (sqlite-queue.ts, pg-queue.ts) cannot drift apart in
 * validation, group commit, wake-ups, counting, row decoding or shutdown.
 *
 * What the core owns:
 * - input checks (`checkJobInput`, `checkClaim`, `checkList`, `checkPurge`) and the closed state;
 * - group commit of enqueues (one transaction per batch) and of completions;
 * - local wake-ups (`WakeHub`): a commit here wakes this process's waiters at once; a dialect
 *   adds how other processes' commits reach it (SQLite: `data_version` polling; PostgreSQL:
 *   LISTEN/NOTIFY);
 * - `QueueStats` (the dialect counts its commits in `commits`, the core counts enqueued jobs);
 * - decoding a stored row into a `Job`, and the claim order (due time, then id).
 *
 * A dialect method may be synchronous (node:sqlite) or return a promise (pg): the core awaits both.
 */

import { hostname } from 'node:os';
import { GatewayError } from '../errors.ts';
import { randomHexPooled } from '../random.ts';
import {
  checkClaim,
  checkList,
  checkPurge,
  type EnqueueResult,
  foldDepth,
  GroupCommit,
  type HeaderPairs,
  intOption,
  type Job,
  type JobInput,
  type JobState,
  type ListQuery,
  newRow,
  type NewRow,
  type Queue,
  QueueOptionError,
  type QueueStats,
  type RouteDepth,
  truncateError,
  type WaitOptions,
  WakeHub,
} from './queue.ts';

/** The columns every store keeps, in the order both select them. */
export const JOB_COLUMNS = `id, route, method, url, headers, body, idempotency_key, attempts, max_attempts, state,
  run_at, lease_until, last_error, created_at, updated_at, claimed_by`;

/** A dialect's column types for the jobs table. */
export interface ColumnTypes {
  text: string;
  /** JSON array of [name, value]. */
  json: string;
  blob: string;
  int: string;
  /** ms since the epoch, like every time here. */
  time: string;
}

/**
 * The queue's migrations, one per schema version (append only), in a dialect's types: the
 * table is `table` and its indexes are named `<prefix>_…` (SQLite: `defer_jobs`; PostgreSQL:
 * `<schema>.jobs` with indexes `jobs_…` in that schema).
 */
export function jobMigrations(table: string, prefix: string, t: ColumnTypes): string[] {
  return [
    `CREATE TABLE ${table} (
       id ${t.text} NOT NULL PRIMARY KEY,
       route ${t.text} NOT NULL,
       method ${t.text} NOT NULL,
       url ${t.text} NOT NULL,
       headers ${t.json} NOT NULL,
       body ${t.blob} NOT NULL,
       idempotency_key ${t.text},
       attempts ${t.int} NOT NULL DEFAULT 0,
       max_attempts ${t.int} NOT NULL,
       state ${t.text} NOT NULL CHECK (state IN ('pending', 'inflight', 'done', 'dead')),
       run_at ${t.time} NOT NULL,
       lease_until ${t.time},
       last_error ${t.text},
       created_at ${t.time} NOT NULL,
       updated_at ${t.time} NOT NULL
     );
     CREATE UNIQUE INDEX ${prefix}_idempotency ON ${table} (route, idempotency_key) WHERE idempotency_key IS NOT NULL;
     CREATE INDEX ${prefix}_pending ON ${table} (route, run_at, id) WHERE state = 'pending';
     CREATE INDEX ${prefix}_inflight ON ${table} (route, lease_until) WHERE state = 'inflight';
     CREATE INDEX ${prefix}_route_state ON ${table} (route, state, id);`,
    // Issue 6: the janitor purges done jobs by age.
    `CREATE INDEX ${prefix}_done ON ${table} (updated_at) WHERE state = 'done';`,
    // Issue 16 item 6: who claimed a job, so leases are renewed and completed only by their
    // claimer, and a restarted instance frees its own in-flight jobs at once (`releaseOwn`).
    `ALTER TABLE ${table} ADD COLUMN claimed_by ${t.text};
     CREATE INDEX ${prefix}_claimed ON ${table} (claimed_by) WHERE state = 'inflight';`,
  ];
}

/**
 * The migrations a store at schema version `current` still needs, as [version, sql]; throws
 * when the store is newer than this build (never run an old build against a newer schema).
 */
export function pendingMigrations(current: number, migrations: readonly string[]): Array<[number, string]> {
  if (current > migrations.length) {
    throw new Error(`queue schema version ${current} is newer than this build (${migrations.length})`);
  }
  return migrations.slice(current).map((sql, i) => [current + i + 1, sql]);
}

/** One stored job as a dialect reads it (`JOB_COLUMNS`). */
export interface JobRow {
  id: string;
  route: string;
  method: string;
  url: string;
  /** JSON text (SQLite) or already decoded (PostgreSQL jsonb). */
  headers: string | HeaderPairs;
  body: Uint8Array;
  idempotency_key: string | null;
  attempts: number;
  max_attempts: number;
  state: JobState;
  run_at: number;
  lease_until: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  claimed_by: string | null;
}

/** What the core takes from a store's options (each store documents them on its own type). */
export interface CoreOptions {
  maxBatch?: number;
  maxWaiting?: number;
  /**
   * Issue 15: how long `enqueue()` (and a read: depth, list, get) may wait for the store before
   * it rejects with 503 `QUEUE_UNAVAILABLE`, ms; 0 = as long as the store takes. Default 5000.
   * A job whose commit was still in flight when its caller was refused is dropped before its
   * COMMIT when the dialect can (`takeAbandoned`), else voided once the commit settles (a dead
   * letter, `lastError` says why): never delivered unless an operator retries it.
   */
  commitTimeoutMs?: number;
  /**
   * Issue 16 item 6: this claimer's name in the store (`Queue.instance`), 1 to
   * `INSTANCE_MAX` characters. Default: unique to this process (host, pid and random bits),
   * so nothing of another life is ever taken for ours; a gateway passes a stable one.
   */
  instance?: string;
  now?: () => number;
}

/** Longest `instance` name. */
export const INSTANCE_MAX = 200;

/** Why a timed-out job is a dead letter (also what an operator sees in `lastError`). */
export const VOIDED = 'commit_timeout: the store committed this job after its sender was answered 503';

export interface CoreLimits {
  /** Upper bound of `maxBatch` (a statement's parameter limits differ per database). */
  maxBatchMax: number;
  /** Enqueue transactions in flight at once. */
  enqueueConcurrency: number;
}

type Maybe<T> = T | Promise<T>;

export abstract class QueueCore implements Queue {
  readonly instance: string;
  protected readonly now: () => number;
  protected readonly hub = new WakeHub();
  /** Write transactions committed; the dialect adds one per commit. */
  protected commits = 0;
  #enqueued = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #batcher: GroupCommit<NewRow, EnqueueResult>;
  readonly #completer: GroupCommit<string, boolean>;
  readonly #commitTimeoutMs: number;
  /** Ids whose sender was refused (commit timeout) while their batch was committing. */
  readonly #abandoned = new Set<string>();
  /** Ids committed after their sender was refused: voided by #voidLater. */
  readonly #toVoid = new Set<string>();
  #voidTimer: NodeJS.Timeout | undefined;
  /** When the store last made a caller wait past the timeout (0 = never): see `health()`. */
  #lastTimeoutAt = 0;

  /** Validates the shared options; throws `QueueOptionError` on a bad one. */
  protected constructor(options: CoreOptions, limits: CoreLimits) {
    const maxBatch = intOption(options, 'maxBatch', 1, limits.maxBatchMax, 512);
    const maxWaiting = intOption(options, 'maxWaiting', 1, 10_000_000, 10_000);
    this.#commitTimeoutMs = intOption(options, 'commitTimeoutMs', 0, 3_600_000, 5000);
    this.now = options.now ?? Date.now;
    this.instance = instanceOption(options.instance);
    this.#batcher = new GroupCommit({
      commit: (rows) => this.#commitBatch(rows),
      maxBatch,
      maxWaiting,
      concurrency: limits.enqueueConcurrency,
      overloaded: () =>
        new GatewayError('QUEUE_UNAVAILABLE', 'the queue is overloaded: too many enqueues waiting'),
    });
    // A deliverer completes jobs as their answers arrive: one transaction per completion would
    // cost one commit (SQLite: an fsync, about 1 ms here) each and cap deliveries near 1,000/s.
    this.#completer = new GroupCommit({
      commit: async (ids) => this.completeIds(ids, this.now()),
      maxBatch,
      maxWaiting: Number.MAX_SAFE_INTEGER,
      concurrency: 1,
      overloaded: () => closedError(),
    });
  }

  // ---- the dialect ----------------------------------------------------------------------

  /**
   * Inserts validated rows in one transaction (or as few as the dialect needs); for a row whose
   * idempotency key exists, answers the first job's id with `duplicate: true`. Results in order.
   */
  protected abstract insertRows(rows: NewRow[], now: number): Maybe<EnqueueResult[]>;
  /** `Queue.claim` after the checks: reap, lease and return up to `limit` rows, any order. */
  protected abstract claimRows(route: string, limit: number, now: number, leaseUntil: number): Maybe<JobRow[]>;
  /** Marks inflight jobs of `this.instance` done; whether each id was. */
  protected abstract completeIds(ids: string[], now: number): Maybe<boolean[]>;
  /** Sets `lease_until` of inflight jobs of `this.instance`; the ids it did. */
  protected abstract renewIds(ids: readonly string[], leaseUntil: number): Maybe<string[]>;
  /** Puts every inflight job of `this.instance` back (attempt not counted); the route of each. */
  protected abstract releaseOwnRows(now: number): Maybe<string[]>;
  /** `Queue.fail` after the checks (the job must be inflight and ours): its new state, or null. */
  protected abstract failRow(id: string, error: string, retryAt: number | null, now: number): Maybe<JobState | null>;
  /** Puts inflight jobs back; the route of each job released. */
  protected abstract releaseIds(ids: readonly string[], now: number): Maybe<string[]>;
  protected abstract depthRows(route: string | undefined): Maybe<Array<{ route: string; state: string; n: number }>>;
  protected abstract listRows(query: ListQuery): Maybe<JobRow[]>;
  protected abstract getRow(id: string): Maybe<JobRow | undefined>;
  /** Revives one dead letter; its route, or undefined when it was not dead. */
  protected abstract retryDeadRow(id: string, now: number): Maybe<string | undefined>;
  /** Revives the dead letters of one route or all; how many per route. */
  protected abstract retryDeadRows(route: string | undefined, now: number): Maybe<Array<{ route: string; n: number }>>;
  protected abstract deleteRow(id: string): Maybe<boolean>;
  protected abstract purgeRows(before: number, limit: number): Maybe<number>;
  /** Marks pending, never-attempted jobs dead with `reason` (see `commitTimeoutMs`); how many. */
  protected abstract voidRows(ids: string[], reason: string, now: number): Maybe<number>;
  /** The cheapest round trip to the store (`SELECT 1`). */
  protected abstract pingStore(): Maybe<void>;
  /** Releases the dialect's connections; called once, after every pending commit. */
  protected abstract closeStore(): Maybe<void>;
  /** Called when a deliverer starts waiting: a dialect that must poll for other processes starts. */
  protected watch(): void {}

  // ---- Queue ---------------------------------------------------------------------------

  enqueue(job: JobInput): Promise<EnqueueResult> {
    let row: NewRow;
    try {
      row = newRow(job, this.now(), this.#closed, closedError);
    } catch (err) {
      return Promise.reject(err);
    }
    const stored = this.#batcher.add(row);
    if (this.#commitTimeoutMs === 0) return stored;
    const { promise, resolve, reject } = Promise.withResolvers<EnqueueResult>();
    const timer = setTimeout(() => {
      this.#lastTimeoutAt = Date.now();
      reject(timedOut('store the request', this.#commitTimeoutMs));
      // Still waiting for a batch: taken back, nothing is written. Already committing: the
      // dialect drops it before its COMMIT (`takeAbandoned`); past that point the commit's
      // outcome is in doubt, and #commitBatch voids it once the commit settles.
      if (!this.#batcher.withdraw(row)) this.#abandoned.add(row.id);
    }, this.#commitTimeoutMs);
    stored.then(
      (r) => {
        clearTimeout(timer);
        resolve(r);
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
    return promise;
  }

  /**
   * Whether the store answers in time: false for `commitTimeoutMs` after a call timed out
   * (the readiness check reports it, so a load balancer can send defer traffic elsewhere).
   */
  health(): { ok: boolean; reason?: string } {
    if (this.#closed) return { ok: false, reason: 'the queue is closed' };
    if (this.#lastTimeoutAt !== 0 && Date.now() - this.#lastTimeoutAt < Math.max(this.#commitTimeoutMs, 1000))
      return { ok: false, reason: `the queue store did not answer within ${this.#commitTimeoutMs} ms` };
    return { ok: true };
  }

  /** One round trip to the store, bounded by `commitTimeoutMs`: what `GET /ready` asks. */
  async ping(): Promise<void> {
    this.#open();
    await this.#bounded(this.pingStore(), 'answer');
  }

  /** A read bounded like a commit: 503 rather than an admin call that hangs with the store. */
  #bounded<T>(read: Maybe<T>, what: string): Promise<T> {
    if (this.#commitTimeoutMs === 0 || !(read instanceof Promise)) return Promise.resolve(read);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.#lastTimeoutAt = Date.now();
        reject(timedOut(what, this.#commitTimeoutMs));
      }, this.#commitTimeoutMs);
    });
    read.catch(() => {}); // a read that fails after the timeout has no one to tell
    return Promise.race([read, expired]).finally(() => clearTimeout(timer));
  }

  /**
   * Voids (dead-letters) jobs committed after their sender was answered 503 (the refusal came
   * during the COMMIT round trip): retried every second until the store answers. Another
   * gateway may claim such a job in the moment between that commit and the void; that
   * delivery is the one exception (README, queue.commit_timeout).
   */
  #voidLater(id: string): void {
    this.#toVoid.add(id);
    if (this.#voidTimer !== undefined) return;
    const run = async () => {
      const ids = [...this.#toVoid];
      try {
        await this.voidRows(ids, VOIDED, this.now());
        for (const i of ids) this.#toVoid.delete(i);
      } catch {
        // the store is still away: try again
      }
      this.#voidTimer = undefined;
      if (this.#toVoid.size > 0 && !this.#closed) this.#voidTimer = setTimeout(run, 1000).unref();
    };
    this.#voidTimer = setTimeout(run, 0);
  }

  async claim(route: string, limit: number, leaseMs: number): Promise<Job[]> {
    checkClaim(route, limit, leaseMs);
    this.#open();
    this.hub.claimed(route);
    const now = this.now();
    const rows = await this.claimRows(route, limit, now, now + leaseMs);
    return rows.map(toJob).sort(byRunAtThenId);
  }

  async renew(ids: readonly string[], leaseMs: number): Promise<string[]> {
    if (!Number.isInteger(leaseMs) || leaseMs < 1) throw new RangeError('leaseMs must be a positive integer');
    this.#open();
    if (ids.length === 0) return [];
    // Bounded: a heartbeat stuck on a stalled store must not stop the next one.
    return this.#bounded(this.renewIds(ids, this.now() + leaseMs), 'renew leases');
  }

  async releaseOwn(): Promise<number> {
    this.#open();
    const routes = await this.#bounded(this.releaseOwnRows(this.now()), 'release the jobs of a previous life');
    for (const route of new Set(routes)) this.hub.wake(route);
    return routes.length;
  }

  async complete(id: string): Promise<boolean> {
    this.#open();
    return this.#completer.add(id);
  }

  async fail(id: string, error: string, retryAt: number | null): Promise<JobState | null> {
    this.#open();
    if (retryAt !== null && !Number.isFinite(retryAt))
      throw new TypeError('retryAt must be a finite number or null');
    return this.failRow(id, truncateError(error), retryAt === null ? null : Math.round(retryAt), this.now());
  }

  async release(ids: readonly string[]): Promise<number> {
    this.#open();
    if (ids.length === 0) return 0;
    const routes = await this.releaseIds(ids, this.now());
    for (const route of new Set(routes)) this.hub.wake(route);
    return routes.length;
  }

  async depth(route?: string): Promise<RouteDepth[]> {
    this.#open();
    return foldDepth(await this.#bounded(this.depthRows(route), 'count the queue'), route);
  }

  async list(query: ListQuery): Promise<Job[]> {
    checkList(query);
    this.#open();
    return (await this.#bounded(this.listRows(query), 'list jobs')).map(toJob);
  }

  async get(id: string): Promise<Job | null> {
    this.#open();
    const row = await this.#bounded(this.getRow(id), 'read the job');
    return row === undefined ? null : toJob(row);
  }

  async retryDead(id: string): Promise<boolean> {
    this.#open();
    const route = await this.retryDeadRow(id, this.now());
    if (route !== undefined) this.hub.wake(route);
    return route !== undefined;
  }

  async retryAllDead(route?: string): Promise<number> {
    this.#open();
    let total = 0;
    for (const row of await this.retryDeadRows(route, this.now())) {
      total += row.n;
      this.hub.wake(row.route);
    }
    return total;
  }

  async delete(id: string): Promise<boolean> {
    this.#open();
    return this.deleteRow(id);
  }

  async purge(before: number, limit: number): Promise<number> {
    checkPurge(before, limit);
    this.#open();
    return this.purgeRows(Math.round(before), limit);
  }

  waitForWork(route: string, options: WaitOptions): Promise<boolean> {
    const woken = this.hub.wait(route, options);
    this.watch();
    return woken;
  }

  stats(): QueueStats {
    return { commits: this.commits, enqueued: this.#enqueued, waiting: this.#batcher.waiting };
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Jobs a dialect stored outside `enqueue()` (an import), for `stats().enqueued`. */
  protected countEnqueued(n: number): void {
    this.#enqueued += n;
  }

  /** Whether `close()` has been called. */
  protected get closed(): boolean {
    return this.#closed;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    await this.#batcher.drain();
    await this.#completer.drain();
    this.hub.close();
    clearTimeout(this.#voidTimer);
    if (this.#toVoid.size > 0) await Promise.resolve(this.voidRows([...this.#toVoid], VOIDED, this.now())).catch(() => {});
    await this.closeStore();
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  /**
   * For a dialect, right before it commits `rows`: the ids whose sender has been refused
   * meanwhile (commit timeout). The dialect removes them inside the transaction, so they are
   * never stored; a refusal after this call (during the COMMIT round trip) is voided instead.
   */
  protected takeAbandoned(rows: readonly NewRow[]): string[] {
    if (this.#abandoned.size === 0) return [];
    const gone: string[] = [];
    for (const r of rows) if (this.#abandoned.delete(r.id)) gone.push(r.id);
    return gone;
  }

  async #commitBatch(rows: NewRow[]): Promise<EnqueueResult[]> {
    let results: EnqueueResult[];
    try {
      results = await this.insertRows(rows, this.now());
    } catch (err) {
      // Refused while committing and the commit failed: it may still have landed (an error
      // after COMMIT was sent), so void it when the store is back; voiding nothing is harmless.
      for (const r of rows) if (this.#abandoned.delete(r.id)) this.#voidLater(r.id);
      throw new GatewayError('QUEUE_UNAVAILABLE', undefined, { cause: err });
    }
    const routes = new Set<string>();
    for (let i = 0; i < rows.length; i++) {
      if (results[i].duplicate) continue;
      // Refused during the COMMIT round trip: stored, but its sender was told 503.
      if (this.#abandoned.delete(rows[i].id)) {
        this.#voidLater(rows[i].id);
        continue;
      }
      this.#enqueued++;
      routes.add(rows[i].route);
    }
    for (const route of routes) this.hub.wake(route);
    return results;
  }
}

function toJob(row: JobRow): Job {
  const { body } = row;
  return {
    id: row.id,
    route: row.route,
    method: row.method,
    url: row.url,
    headers: typeof row.headers === 'string' ? JSON.parse(row.headers) : row.headers,
    body: Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength),
    idempotencyKey: row.idempotency_key,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    state: row.state,
    runAt: row.run_at,
    leaseUntil: row.lease_until,
    lastError: row.last_error,
    claimedBy: row.claimed_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function byRunAtThenId(a: Job, b: Job): number {
  return a.runAt - b.runAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function instanceOption(value: unknown): string {
  if (value === undefined) return `${hostname()}:${process.pid}:${randomHexPooled(4)}`;
  if (typeof value !== 'string' || value === '' || value.length > INSTANCE_MAX) {
    throw new QueueOptionError('instance', `a string of 1 to ${INSTANCE_MAX} characters`, value);
  }
  return value;
}

function timedOut(what: string, ms: number): GatewayError {
  return new GatewayError('QUEUE_UNAVAILABLE', `the queue store did not ${what} within ${ms} ms (queue.commit_timeout)`);
}

export function closedError(): GatewayError {
  return new GatewayError('QUEUE_UNAVAILABLE', 'the queue is closed');
}
