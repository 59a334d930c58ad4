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
import { databaseOf, inTransaction, listenOn } from './pg-conn.ts';
import {
  type EnqueueResult,
  intOption,
  type JobInput,
  type JobState,
  type ListQuery,
  newRow,
  type NewRow,
  QueueOptionError,
} from './queue.ts';
import { closedError, JOB_COLUMNS, jobMigrations, type JobRow, pendingMigrations, QueueCore } from './queue-core.ts';

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
  /** See `CoreOptions.commitTimeoutMs` (queue-core.ts). Default 5000. */
  commitTimeoutMs?: number;
  /** See `CoreOptions.instance` (queue-core.ts): who claims. Default unique to the process. */
  instance?: string;
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

/** The migrations, given the quoted schema. */
const migrations = (s: string) =>
  jobMigrations(`${s}.jobs`, 'jobs', { text: 'text', json: 'jsonb', blob: 'bytea', int: 'int', time: 'bigint' });

/** The PostgreSQL dialect of the queue core (queue-core.ts). */
export class PgQueue extends QueueCore {
  /** `host:port/database` of the connection (databaseOf): who shares transactions with it. */
  readonly database: string;
  #pool: pg.Pool;
  #clientConfig: pg.ClientConfig;
  #schema: string;
  #channel: string;
  #sql: ReturnType<typeof statements>;
  #onError: (err: Error) => void;
  #reconnectMs: number;
  #listener: pg.Client | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;

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
    for (const name of ['now', 'onError'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') {
        throw new QueueOptionError(name, 'a function', options[name]);
      }
    }
    // Several INSERTs in flight hide the round trip; half the pool stays free for claims.
    super(options, { maxBatchMax: 10_000, enqueueConcurrency: Math.max(1, Math.floor(poolSize / 2)) });
    this.#reconnectMs = intOption(options, 'reconnectMs', 1, 600_000, 1000);
    this.#onError = options.onError ?? ((err) => process.emitWarning(err));

    this.database = databaseOf(options.connectionString);
    this.#schema = schema;
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
  }

  /**
   * One transaction per batch: the INSERT (with its NOTIFY, sent at COMMIT), then — just before
   * COMMIT — the rows whose sender was refused meanwhile are deleted again (queue-core.ts,
   * `takeAbandoned`), so a stalled store that heals does not deliver them.
   */
  protected async insertRows(rows: NewRow[], now: number): Promise<EnqueueResult[]> {
    const results = await inTransaction(this.#pool, async (client) => {
      const inserted = await this.#insertIn(client, rows, now);
      const gone = this.takeAbandoned(rows);
      if (gone.length > 0) await client.query(this.#sql.drop, [gone]);
      return inserted;
    });
    this.commits++;
    return results;
  }

  async #insertIn(client: pg.PoolClient, rows: NewRow[], now: number): Promise<EnqueueResult[]> {
    const results: EnqueueResult[] = new Array(rows.length);
    // A duplicate key whose first job is deleted between our INSERT and our lookup is not
    // found: insert it again (bounded; it takes a delete racing an enqueue of that very key).
    let todo = rows.map((_, i) => i);
    for (let round = 0; todo.length > 0; round++) {
      if (round === 3) throw new Error('idempotency conflicts kept racing with deletes');
      const batch = todo.map((i) => rows[i]);
      const { rows: inserted } = await client.query<{ id: string }>(this.#sql.insert, this.#insertParams(batch, now));
      const insertedIds = new Set(inserted.map((r) => r.id));
      const duplicates: number[] = [];
      for (const i of todo) {
        if (insertedIds.has(rows[i].id)) results[i] = { id: rows[i].id, duplicate: false };
        else duplicates.push(i);
      }
      todo = [];
      if (duplicates.length === 0) break;
      const { rows: firsts } = await client.query<{ route: string; key: string; id: string }>(this.#sql.byKeys, [
        duplicates.map((i) => rows[i].route),
        duplicates.map((i) => rows[i].key),
      ]);
      const byKey = new Map(firsts.map((f) => [`${f.route}\0${f.key}`, f.id]));
      for (const i of duplicates) {
        const id = byKey.get(`${rows[i].route}\0${rows[i].key}`);
        if (id === undefined) todo.push(i);
        else results[i] = { id, duplicate: true };
      }
    }
    return results;
  }

  protected async claimRows(route: string, limit: number, now: number, leaseUntil: number): Promise<JobRow[]> {
    return (await this.#write<JobRow>(this.#sql.claim, [route, limit, now, leaseUntil, this.instance])).rows;
  }

  /** Completions arrive one per delivered job: one UPDATE per batch instead of one per job. */
  protected async completeIds(ids: string[], now: number): Promise<boolean[]> {
    const { rows } = await this.#write<{ id: string }>(this.#sql.complete, [ids, now, this.instance]);
    const done = new Set(rows.map((r) => r.id));
    return ids.map((id) => done.has(id));
  }

  protected async renewIds(ids: readonly string[], leaseUntil: number): Promise<string[]> {
    const { rows } = await this.#write<{ id: string }>(this.#sql.renew, [ids, leaseUntil, this.instance]);
    return rows.map((r) => r.id);
  }

  protected async releaseOwnRows(now: number): Promise<string[]> {
    const { rows } = await this.#write<{ route: string }>(this.#sql.releaseOwn, [now, this.instance, this.#channel]);
    return rows.map((r) => r.route);
  }

  protected async failRow(id: string, error: string, retryAt: number | null, now: number): Promise<JobState | null> {
    const { rows } = await this.#write<{ state: JobState }>(this.#sql.fail, [id, error, retryAt, now, this.instance]);
    return rows[0]?.state ?? null;
  }

  protected async releaseIds(ids: readonly string[], now: number): Promise<string[]> {
    const { rows } = await this.#write<{ route: string }>(this.#sql.release, [ids, now, this.#channel]);
    return rows.map((r) => r.route);
  }

  protected async depthRows(route: string | undefined): Promise<Array<{ route: string; state: string; n: number }>> {
    const { rows } =
      route === undefined
        ? await this.#pool.query(this.#sql.depthAll)
        : await this.#pool.query(this.#sql.depthRoute, [route]);
    return rows;
  }

  protected async listRows(query: ListQuery): Promise<JobRow[]> {
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
    return (await this.#pool.query<JobRow>(sql, params)).rows;
  }

  protected async getRow(id: string): Promise<JobRow | undefined> {
    return (await this.#pool.query<JobRow>(this.#sql.get, [id])).rows[0];
  }

  protected async retryDeadRow(id: string, now: number): Promise<string | undefined> {
    const { rows } = await this.#write<{ route: string }>(this.#sql.retryDead, [id, now, this.#channel]);
    return rows[0]?.route;
  }

  protected async retryDeadRows(route: string | undefined, now: number): Promise<Array<{ route: string; n: number }>> {
    return (await this.#write<{ route: string; n: number }>(this.#sql.retryAllDead, [route ?? null, now, this.#channel]))
      .rows;
  }

  protected async deleteRow(id: string): Promise<boolean> {
    return ((await this.#write(this.#sql.delete, [id])).rowCount ?? 0) > 0;
  }

  protected async purgeRows(before: number, limit: number): Promise<number> {
    return (await this.#write(this.#sql.purge, [before, limit])).rowCount ?? 0;
  }

  protected async voidRows(ids: string[], reason: string, now: number): Promise<number> {
    return (await this.#write(this.#sql.voidRows, [ids, reason, now])).rowCount ?? 0;
  }

  protected async pingStore(): Promise<void> {
    await this.#pool.query('SELECT 1');
  }

  protected async closeStore(): Promise<void> {
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

  /** A writing statement (autocommit: one commit). */
  async #write<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[],
  ): Promise<pg.QueryResult<R>> {
    const result = await this.#pool.query<R>(sql, params);
    this.commits++;
    return result;
  }

  #insertParams(batch: readonly NewRow[], now: number): unknown[] {
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
      now,
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
    if (this.closed) throw closedError();
    const inserted = await inTransaction(this.#pool, async (client) => {
      const now = this.now();
      const rows = (await work(client)).map((job) => newRow(job, now, this.closed, closedError));
      return rows.length === 0 ? 0 : ((await client.query(this.#sql.insert, this.#insertParams(rows, now))).rowCount ?? 0);
    });
    this.commits++;
    this.countEnqueued(inserted);
    return inserted;
  }

  async #migrate(): Promise<void> {
    const s = `"${this.#schema}"`;
    await inTransaction(this.#pool, async (client) => {
      // Gateways starting together must not race CREATE SCHEMA / CREATE TABLE.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`manifold.defer:${this.#schema}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_version (version int NOT NULL)`);
      const { rows } = await client.query<{ version: number | null }>(
        `SELECT max(version) AS version FROM ${s}.schema_version`,
      );
      for (const [version, sql] of pendingMigrations(rows[0].version ?? 0, migrations(s))) {
        await client.query(sql);
        await client.query(`INSERT INTO ${s}.schema_version (version) VALUES ($1)`, [version]);
      }
    });
    this.commits++;
  }

  async #connectListener(): Promise<void> {
    const client = await listenOn(
      new pg.Client(this.#clientConfig),
      this.#channel,
      {
        notification: (payload) => this.hub.wake(payload),
        lost: (lost, err) => {
          if (this.#listener !== lost) return; // already handled, or closing
          this.#listener = undefined;
          lost.end().catch(() => {});
          this.#onError(err);
          this.#scheduleReconnect();
        },
      },
      () => this.closed,
    );
    if (client !== null) this.#listener = client;
  }

  #scheduleReconnect(): void {
    if (this.closed) return;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#connectListener().then(
        () => this.hub.wakeAll(), // notifications sent while disconnected are lost
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
            UPDATE ${s}.jobs SET state = 'inflight', attempts = attempts + 1, lease_until = $4, claimed_by = $5,
              updated_at = $3
            WHERE id IN (SELECT id FROM picked)
            RETURNING ${JOB_COLUMNS}`,
    complete: `UPDATE ${s}.jobs SET state = 'done', lease_until = NULL, updated_at = $2
               WHERE id = ANY($1::text[]) AND state = 'inflight' AND claimed_by = $3
               RETURNING id`,
    renew: `UPDATE ${s}.jobs SET lease_until = $2
            WHERE id = ANY($1::text[]) AND state = 'inflight' AND claimed_by = $3
            RETURNING id`,
    releaseOwn: `UPDATE ${s}.jobs SET state = 'pending', attempts = greatest(attempts - 1, 0), lease_until = NULL,
                   updated_at = $1
                 WHERE state = 'inflight' AND claimed_by = $2
                 RETURNING route, pg_notify($3, route)`,
    fail: `UPDATE ${s}.jobs SET
             state = CASE WHEN $3::int8 IS NULL OR attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
             run_at = CASE WHEN $3::int8 IS NULL OR attempts >= max_attempts THEN run_at ELSE $3::int8 END,
             lease_until = NULL, last_error = $2, updated_at = $4
           WHERE id = $1 AND state = 'inflight' AND claimed_by = $5
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
    drop: `DELETE FROM ${s}.jobs WHERE id = ANY($1::text[])`,
    voidRows: `UPDATE ${s}.jobs SET state = 'dead', last_error = $2, updated_at = $3
               WHERE id = ANY($1::text[]) AND state = 'pending' AND attempts = 0`,
    purge: `DELETE FROM ${s}.jobs WHERE id IN (
              SELECT id FROM ${s}.jobs WHERE state = 'done' AND updated_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  };
}
