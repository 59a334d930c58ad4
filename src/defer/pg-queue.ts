/**
 * `Queue` on PostgreSQL (`pg`), shared by many gateways (DESIGN.md, "Many instances").
 *
 * Claims are one statement with `FOR UPDATE SKIP LOCKED`, so concurrent claimers on any
 * instance skip each other's rows instead of waiting or double-claiming. Wake-ups use
 * LISTEN/NOTIFY on a dedicated connection (NOTIFY is transactional: sent at commit, never for
 * a rolled-back job). Enqueues are grouped into one multi-row INSERT per batch. Every
 * statement runs in autocommit: one statement, one commit.
 *
 * Times are ms since the epoch from this process's clock (`now`), like the SQLite store, so
 * both behave the same in the contract suite; across machines, keep clocks in sync.
 */

import pg from 'pg';
import { GatewayError } from '../errors.ts';
import { databaseOf } from './pg-conn.ts';
import {
  checkClaim,
  checkList,
  checkPurge,
  type EnqueueResult,
  foldDepth,
  GroupCommit,
  intOption,
  type Job,
  type JobInput,
  type JobState,
  type ListQuery,
  type Queue,
  QueueOptionError,
  type QueueStats,
  type RouteDepth,
  truncateError,
  type WaitOptions,
  WakeHub,
  newRow,
  type NewRow,
} from './queue.ts';

export interface PgQueueOptions {
  /** `postgres://user:pass@host:port/db?sslmode=...`. */
  connectionString: string;
  /**
   * Schema holding the queue tables, created and migrated on open. Lower-case letters, digits
   * and `_`, at most 48 characters (the NOTIFY channel is derived from it). Default `manifold`.
   * Gateways sharing a queue use the same schema; tests use a fresh one each.
   */
  schema?: string;
  /** Pool connections (plus one dedicated LISTEN connection). Default 10. */
  poolSize?: number;
  /** How long to wait for a pool connection before a call fails, ms. Default 5000. */
  connectTimeoutMs?: number;
  /** Most enqueues in one INSERT. Default 512. */
  maxBatch?: number;
  /** Most enqueues accepted but not yet committed before `enqueue()` refuses. Default 10000. */
  maxWaiting?: number;
  /** Delay before reconnecting a lost LISTEN connection, ms. Default 1000. */
  reconnectMs?: number;
  /** Clock, ms since the epoch. Default `Date.now`; tests inject one to move time. */
  now?: () => number;
  /**
   * Background errors nobody awaits (LISTEN connection lost, an idle pool connection broke).
   * Default: `process.emitWarning`. Waiters keep working on `maxWaitMs` while disconnected.
   */
  onError?: (err: Error) => void;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,47}$/;

/** ms-epoch columns are int8, which `pg` returns as strings by default; these fit a double exactly. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 && format !== 'binary'
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/** One migration per schema version, given the quoted schema. Append only. */
const MIGRATIONS: ReadonlyArray<(s: string) => string> = [
  (s) => `CREATE TABLE ${s}.jobs (
     id text PRIMARY KEY,
     route text NOT NULL,
     method text NOT NULL,
     url text NOT NULL,
     headers jsonb NOT NULL,            -- array of [name, value]
     body bytea NOT NULL,
     idempotency_key text,
     attempts int NOT NULL DEFAULT 0,
     max_attempts int NOT NULL,
     state text NOT NULL CHECK (state IN ('pending', 'inflight', 'done', 'dead')),
     run_at bigint NOT NULL,            -- ms since the epoch, like every time here
     lease_until bigint,
     last_error text,
     created_at bigint NOT NULL,
     updated_at bigint NOT NULL
   );
   CREATE UNIQUE INDEX jobs_idempotency ON ${s}.jobs (route, idempotency_key) WHERE idempotency_key IS NOT NULL;
   CREATE INDEX jobs_pending ON ${s}.jobs (route, run_at, id) WHERE state = 'pending';
   CREATE INDEX jobs_inflight ON ${s}.jobs (route, lease_until) WHERE state = 'inflight';
   CREATE INDEX jobs_route_state ON ${s}.jobs (route, state, id);`,
  // Issue 6: the janitor purges done jobs by age.
  (s) => `CREATE INDEX jobs_done ON ${s}.jobs (updated_at) WHERE state = 'done';`,
];

interface Row {
  id: string;
  route: string;
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body: Buffer;
  idempotency_key: string | null;
  attempts: number;
  max_attempts: number;
  state: JobState;
  run_at: number;
  lease_until: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

const JOB_COLUMNS = `id, route, method, url, headers, body, idempotency_key, attempts, max_attempts, state,
  run_at, lease_until, last_error, created_at, updated_at`;

export class PgQueue implements Queue {
  /** `host:port/database` of the connection (databaseOf): who shares transactions with it. */
  readonly database: string;
  #pool: pg.Pool;
  #clientConfig: pg.ClientConfig;
  #schema: string;
  #channel: string;
  #sql: ReturnType<typeof statements>;
  #now: () => number;
  #onError: (err: Error) => void;
  #reconnectMs: number;
  #hub = new WakeHub();
  #batcher: GroupCommit<NewRow, EnqueueResult>;
  #completer: GroupCommit<string, boolean>;
  #listener: pg.Client | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #commits = 0;
  #enqueued = 0;

  /**
   * Validate options, connect, create or migrate the schema and start listening. Throws
   * `QueueOptionError` synchronously on a bad option; the promise rejects (with nothing left
   * open) if the database is unreachable or the migration fails.
   */
  static open(options: PgQueueOptions): Promise<PgQueue> {
    const queue = new PgQueue(options);
    return queue.#start().then(
      () => queue,
      async (err) => {
        await queue.close().catch(() => {});
        throw err;
      },
    );
  }

  private constructor(options: PgQueueOptions) {
    if (typeof options !== 'object' || options === null)
      throw new QueueOptionError('options', 'an object', options);
    if (typeof options.connectionString !== 'string' || options.connectionString === '') {
      throw new QueueOptionError('connectionString', 'a postgres:// URL', options.connectionString);
    }
    const schema = options.schema ?? 'manifold';
    if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
      throw new QueueOptionError('schema', 'lower-case letters, digits and _, at most 48 characters', schema);
    }
    const poolSize = intOption(options, 'poolSize', 1, 1000, 10);
    const connectTimeoutMs = intOption(options, 'connectTimeoutMs', 1, 600_000, 5000);
    const maxBatch = intOption(options, 'maxBatch', 1, 10_000, 512);
    const maxWaiting = intOption(options, 'maxWaiting', 1, 10_000_000, 10_000);
    this.#reconnectMs = intOption(options, 'reconnectMs', 1, 600_000, 1000);
    for (const name of ['now', 'onError'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') {
        throw new QueueOptionError(name, 'a function', options[name]);
      }
    }
    this.#now = options.now ?? Date.now;
    this.#onError = options.onError ?? ((err) => process.emitWarning(err));

    this.#schema = schema;
    this.database = databaseOf(options.connectionString);
    this.#channel = `${schema}.defer`;
    this.#sql = statements(`"${schema}"`);
    this.#clientConfig = {
      connectionString: options.connectionString,
      connectionTimeoutMillis: connectTimeoutMs,
      types: TYPES,
    };
    this.#pool = new pg.Pool({ ...this.#clientConfig, max: poolSize });
    // An idle connection that breaks emits here; unhandled, it would crash the process.
    this.#pool.on('error', (err) => this.#onError(err));
    this.#batcher = new GroupCommit({
      commit: (rows) => this.#commitBatch(rows),
      maxBatch,
      maxWaiting,
      // Several INSERTs in flight hide the round trip; half the pool stays free for claims.
      concurrency: Math.max(1, Math.floor(poolSize / 2)),
      overloaded: () =>
        new GatewayError('QUEUE_UNAVAILABLE', 'the queue is overloaded: too many enqueues waiting'),
    });
    // Completions arrive one per delivered job: one UPDATE per batch instead of one per job.
    this.#completer = new GroupCommit({
      commit: (ids) => this.#completeBatch(ids),
      maxBatch,
      maxWaiting: Number.MAX_SAFE_INTEGER,
      concurrency: 1,
      overloaded: () => closedError(),
    });
  }

  async enqueue(job: JobInput): Promise<EnqueueResult> {
    return this.#batcher.add(newRow(job, this.#now(), this.#closed, closedError));
  }

  async claim(route: string, limit: number, leaseMs: number): Promise<Job[]> {
    checkClaim(route, limit, leaseMs);
    this.#open();
    this.#hub.claimed(route);
    const now = this.#now();
    const { rows } = await this.#write<Row>(this.#sql.claim, [route, limit, now, now + leaseMs]);
    return rows.map(toJob).sort(byRunAtThenId);
  }

  async complete(id: string): Promise<boolean> {
    this.#open();
    return this.#completer.add(id);
  }

  async fail(id: string, error: string, retryAt: number | null): Promise<JobState | null> {
    this.#open();
    if (retryAt !== null && !Number.isFinite(retryAt))
      throw new TypeError('retryAt must be a finite number or null');
    const retry = retryAt === null ? null : Math.round(retryAt);
    const { rows } = await this.#write<{ state: JobState }>(this.#sql.fail, [
      id,
      truncateError(error),
      retry,
      this.#now(),
    ]);
    return rows[0]?.state ?? null;
  }

  async release(ids: readonly string[]): Promise<number> {
    this.#open();
    if (ids.length === 0) return 0;
    const { rows } = await this.#write<{ route: string }>(this.#sql.release, [
      ids,
      this.#now(),
      this.#channel,
    ]);
    for (const route of new Set(rows.map((r) => r.route))) this.#hub.wake(route);
    return rows.length;
  }

  async depth(route?: string): Promise<RouteDepth[]> {
    this.#open();
    const { rows } =
      route === undefined
        ? await this.#pool.query(this.#sql.depthAll)
        : await this.#pool.query(this.#sql.depthRoute, [route]);
    return foldDepth(rows, route);
  }

  async list(query: ListQuery): Promise<Job[]> {
    checkList(query);
    this.#open();
    const where: string[] = [];
    const params: Array<string | number> = [];
    for (const [column, value] of [
      ['route =', query.route],
      ['state =', query.state],
      ['id >', query.after],
    ] as const) {
      if (value === undefined) continue;
      params.push(value);
      where.push(`${column} $${params.length}`);
    }
    params.push(query.limit);
    const sql = `SELECT ${JOB_COLUMNS} FROM "${this.#schema}".jobs
      ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT $${params.length}`;
    const { rows } = await this.#pool.query<Row>(sql, params);
    return rows.map(toJob);
  }

  async get(id: string): Promise<Job | null> {
    this.#open();
    const { rows } = await this.#pool.query<Row>(this.#sql.get, [id]);
    return rows.length === 0 ? null : toJob(rows[0]);
  }

  async retryDead(id: string): Promise<boolean> {
    this.#open();
    const { rows } = await this.#write<{ route: string }>(this.#sql.retryDead, [
      id,
      this.#now(),
      this.#channel,
    ]);
    if (rows.length > 0) this.#hub.wake(rows[0].route);
    return rows.length > 0;
  }

  async retryAllDead(route?: string): Promise<number> {
    this.#open();
    const { rows } = await this.#write<{ route: string; n: number }>(this.#sql.retryAllDead, [
      route ?? null,
      this.#now(),
      this.#channel,
    ]);
    let total = 0;
    for (const row of rows) {
      total += row.n;
      this.#hub.wake(row.route);
    }
    return total;
  }

  async delete(id: string): Promise<boolean> {
    this.#open();
    return ((await this.#write(this.#sql.delete, [id])).rowCount ?? 0) > 0;
  }

  async purge(before: number, limit: number): Promise<number> {
    checkPurge(before, limit);
    this.#open();
    return (await this.#write(this.#sql.purge, [Math.round(before), limit])).rowCount ?? 0;
  }

  waitForWork(route: string, options: WaitOptions): Promise<boolean> {
    return this.#hub.wait(route, options);
  }

  stats(): QueueStats {
    return { commits: this.#commits, enqueued: this.#enqueued, waiting: this.#batcher.waiting };
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    await this.#batcher.drain();
    await this.#completer.drain();
    this.#hub.close();
    clearTimeout(this.#reconnectTimer);
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    await this.#pool.end();
  }

  async #start(): Promise<void> {
    await this.#migrate();
    await this.#connectListener();
  }

  #open(): void {
    if (this.#closed) throw closedError();
  }

  /** A writing statement (autocommit: one commit). */
  async #write<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const result = await this.#pool.query<R>(sql, params);
    this.#commits++;
    return result;
  }

  async #completeBatch(ids: string[]): Promise<boolean[]> {
    const { rows } = await this.#write<{ id: string }>(this.#sql.complete, [ids, this.#now()]);
    const done = new Set(rows.map((r) => r.id));
    return ids.map((id) => done.has(id));
  }

  async #commitBatch(rows: NewRow[]): Promise<EnqueueResult[]> {
    const results: EnqueueResult[] = new Array(rows.length);
    const woken = new Set<string>();
    try {
      // A duplicate key whose first job is deleted between our INSERT and our lookup is not
      // found: insert it again (bounded; it takes a delete racing an enqueue of that very key).
      let todo = rows.map((_, i) => i);
      for (let round = 0; todo.length > 0; round++) {
        if (round === 3) throw new Error('idempotency conflicts kept racing with deletes');
        const batch = todo.map((i) => rows[i]);
        const { rows: inserted } = await this.#write<{ id: string }>(this.#sql.insert, this.#insertParams(batch));
        const insertedIds = new Set(inserted.map((r) => r.id));
        const duplicates: number[] = [];
        for (const i of todo) {
          if (insertedIds.has(rows[i].id)) {
            results[i] = { id: rows[i].id, duplicate: false };
            woken.add(rows[i].route);
            this.#enqueued++;
          } else {
            duplicates.push(i);
          }
        }
        todo = [];
        if (duplicates.length === 0) break;
        const { rows: firsts } = await this.#pool.query<{ route: string; key: string; id: string }>(
          this.#sql.byKeys,
          [duplicates.map((i) => rows[i].route), duplicates.map((i) => rows[i].key)],
        );
        const byKey = new Map(firsts.map((f) => [`${f.route}\0${f.key}`, f.id]));
        for (const i of duplicates) {
          const id = byKey.get(`${rows[i].route}\0${rows[i].key}`);
          if (id === undefined) todo.push(i);
          else results[i] = { id, duplicate: true };
        }
      }
    } catch (err) {
      throw new GatewayError('QUEUE_UNAVAILABLE', undefined, { cause: err });
    } finally {
      // NOTIFY reaches this process too, a few ms later; wake local waiters now.
      for (const route of woken) this.#hub.wake(route);
    }
    return results;
  }

  #insertParams(batch: readonly NewRow[]): unknown[] {
    return [
      batch.map((r) => r.id),
      batch.map((r) => r.route),
      batch.map((r) => r.method),
      batch.map((r) => r.url),
      batch.map((r) => r.headers),
      batch.map((r) => Buffer.from(r.body.buffer, r.body.byteOffset, r.body.byteLength)),
      batch.map((r) => r.key),
      batch.map((r) => r.maxAttempts),
      batch.map((r) => r.runAt),
      this.#now(),
      this.#channel,
    ];
  }

  /**
   * Issue 13 (`manifold queue import`): one transaction on this queue's database. `work` runs
   * on its connection first — it reads and deletes the rows of another table there — and
   * returns the jobs they become, inserted in the same commit: the rows move, or nothing does.
   * Jobs whose idempotency key exists already are skipped. Resolves with the jobs inserted.
   */
  async transact(work: (client: pg.ClientBase) => Promise<JobInput[]>): Promise<number> {
    this.#open();
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const rows = (await work(client)).map((job) => newRow(job, this.#now(), this.#closed, closedError));
      const inserted =
        rows.length === 0 ? 0 : ((await client.query(this.#sql.insert, this.#insertParams(rows))).rowCount ?? 0);
      await client.query('COMMIT');
      this.#commits++;
      this.#enqueued += inserted;
      return inserted;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async #migrate(): Promise<void> {
    const client = await this.#pool.connect();
    const s = `"${this.#schema}"`;
    try {
      await client.query('BEGIN');
      // Gateways starting together must not race CREATE SCHEMA / CREATE TABLE.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`manifold.defer:${this.#schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_version (version int NOT NULL)`);
      const { rows } = await client.query<{ version: number | null }>(
        `SELECT max(version) AS version FROM ${s}.schema_version`,
      );
      const current = rows[0].version ?? 0;
      if (current > MIGRATIONS.length) {
        throw new Error(`queue schema version ${current} is newer than this build (${MIGRATIONS.length})`);
      }
      for (let v = current; v < MIGRATIONS.length; v++) {
        await client.query(MIGRATIONS[v](s));
        await client.query(`INSERT INTO ${s}.schema_version (version) VALUES ($1)`, [v + 1]);
      }
      await client.query('COMMIT');
      this.#commits++;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async #connectListener(): Promise<void> {
    const client = new pg.Client(this.#clientConfig);
    const lost = (err: Error) => {
      if (this.#listener !== client) return; // already handled, or closing
      this.#listener = undefined;
      client.end().catch(() => {});
      this.#onError(err);
      this.#scheduleReconnect();
    };
    client.on('error', lost);
    client.on('end', () => lost(new Error('queue LISTEN connection ended')));
    client.on('notification', (msg) => {
      if (msg.channel === this.#channel && msg.payload) this.#hub.wake(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN "${this.#channel}"`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.#closed) {
      await client.end().catch(() => {});
      return;
    }
    this.#listener = client;
  }

  #scheduleReconnect(): void {
    if (this.#closed) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#connectListener().then(
        () => this.#hub.wakeAll(), // notifications sent while disconnected are lost
        (err) => {
          this.#onError(err);
          this.#scheduleReconnect();
        },
      );
    }, this.#reconnectMs);
    this.#reconnectTimer.unref();
  }
}

/** Every fixed statement, with the quoted schema in place. */
function statements(s: string) {
  return {
    insert: `INSERT INTO ${s}.jobs (id, route, method, url, headers, body, idempotency_key, attempts, max_attempts,
               state, run_at, created_at, updated_at)
             SELECT id, route, method, url, headers::jsonb, body, key, 0, max_attempts, 'pending', run_at, $10::int8, $10::int8
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[],
                         $8::int[], $9::int8[]) WITH ORDINALITY
               AS t(id, route, method, url, headers, body, key, max_attempts, run_at, ord)
             ORDER BY ord
             ON CONFLICT (route, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING id, pg_notify($11, route)`,
    byKeys: `SELECT route, idempotency_key AS key, id FROM ${s}.jobs
             WHERE (route, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    // One statement: dead-letter expired jobs that used their last attempt, then lock (skipping
    // rows other claimers hold) expired leases first and due jobs next, and lease them.
    // FOR UPDATE is not allowed under UNION, hence two MATERIALIZED CTEs; they are read lazily,
    // so only the rows the LIMIT takes get locked.
    claim: `WITH reaped AS (
              UPDATE ${s}.jobs SET state = 'dead', lease_until = NULL, last_error = 'lease expired', updated_at = $3
              WHERE id IN (SELECT id FROM ${s}.jobs WHERE route = $1 AND state = 'inflight' AND lease_until <= $3
                             AND attempts >= max_attempts FOR UPDATE SKIP LOCKED)
            ), expired AS MATERIALIZED (
              SELECT id FROM ${s}.jobs WHERE route = $1 AND state = 'inflight' AND lease_until <= $3
                AND attempts < max_attempts
              ORDER BY lease_until LIMIT $2 FOR UPDATE SKIP LOCKED
            ), due AS MATERIALIZED (
              SELECT id FROM ${s}.jobs WHERE route = $1 AND state = 'pending' AND run_at <= $3
              ORDER BY run_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
            ), picked AS (
              SELECT id FROM expired UNION ALL SELECT id FROM due LIMIT $2
            )
            UPDATE ${s}.jobs SET state = 'inflight', attempts = attempts + 1, lease_until = $4, updated_at = $3
            WHERE id IN (SELECT id FROM picked)
            RETURNING ${JOB_COLUMNS}`,
    complete: `UPDATE ${s}.jobs SET state = 'done', lease_until = NULL, updated_at = $2
               WHERE id = ANY($1::text[]) AND state = 'inflight'
               RETURNING id`,
    fail: `UPDATE ${s}.jobs SET
             state = CASE WHEN $3::int8 IS NULL OR attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
             run_at = CASE WHEN $3::int8 IS NULL OR attempts >= max_attempts THEN run_at ELSE $3::int8 END,
             lease_until = NULL, last_error = $2, updated_at = $4
           WHERE id = $1 AND state = 'inflight'
           RETURNING state`,
    release: `UPDATE ${s}.jobs SET state = 'pending', attempts = greatest(attempts - 1, 0), lease_until = NULL,
                updated_at = $2
              WHERE state = 'inflight' AND id = ANY($1::text[])
              RETURNING route, pg_notify($3, route)`,
    depthAll: `SELECT route, state, count(*) AS n FROM ${s}.jobs GROUP BY route, state`,
    depthRoute: `SELECT route, state, count(*) AS n FROM ${s}.jobs WHERE route = $1 GROUP BY route, state`,
    get: `SELECT ${JOB_COLUMNS} FROM ${s}.jobs WHERE id = $1`,
    retryDead: `UPDATE ${s}.jobs SET state = 'pending', attempts = 0, run_at = $2, lease_until = NULL, updated_at = $2
                WHERE id = $1 AND state = 'dead'
                RETURNING route, pg_notify($3, route)`,
    retryAllDead: `WITH retried AS (
                     UPDATE ${s}.jobs SET state = 'pending', attempts = 0, run_at = $2, lease_until = NULL,
                       updated_at = $2
                     WHERE state = 'dead' AND ($1::text IS NULL OR route = $1)
                     RETURNING route
                   )
                   SELECT route, count(*) AS n, pg_notify($3, route) FROM retried GROUP BY route`,
    delete: `DELETE FROM ${s}.jobs WHERE id = $1`,
    purge: `DELETE FROM ${s}.jobs WHERE id IN (
              SELECT id FROM ${s}.jobs WHERE state = 'done' AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  };
}

function toJob(row: Row): Job {
  return {
    id: row.id,
    route: row.route,
    method: row.method,
    url: row.url,
    headers: row.headers,
    body: row.body,
    idempotencyKey: row.idempotency_key,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    state: row.state,
    runAt: row.run_at,
    leaseUntil: row.lease_until,
    lastError: row.last_error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function byRunAtThenId(a: Job, b: Job): number {
  return a.runAt - b.runAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function closedError(): GatewayError {
  return new GatewayError('QUEUE_UNAVAILABLE', 'the queue is closed');
}
