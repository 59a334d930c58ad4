/**
 * `Queue` on one SQLite file (`node:sqlite`), the default store: shared by the processes of one
 * machine (primary and workers each open the file).
 *
 * Durability: WAL with `synchronous=FULL`, so a commit fsyncs the WAL and an acknowledged job
 * survives a power loss. The deliverers' bookkeeping (claim, complete, fail, purge) commits
 * without an fsync: losing one to a power cut only means another delivery (see `#write`). Concurrency: every write is a `BEGIN IMMEDIATE` transaction, so the
 * write lock is taken up front (no read-to-write upgrade that could fail with SQLITE_BUSY
 * mid-transaction) and a claim's select + update is atomic across processes; a writer waits
 * up to `busyTimeoutMs` for another process's lock.
 *
 * Trade-off: `DatabaseSync` is synchronous, so a commit (one fsync) and any wait for the lock
 * block this thread. Group commit keeps that to one fsync per event-loop turn under load;
 * moving the store into a worker thread would take it off the loop entirely if the data plane
 * ever needs that.
 *
 * SQLite's busy handler is not fair: a waiting process sleeps with growing back-off while the
 * holder may take the lock again at once, so a process writing back-to-back (a deliverer
 * claiming one job at a time in a tight loop) can keep other processes' enqueues waiting up
 * to `busyTimeoutMs`. Deliverers should claim in batches and pause when a claim comes back
 * empty (`waitForWork`).
 */

import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { type EnqueueResult, intOption, type JobState, type ListQuery, type NewRow, QueueOptionError } from './queue.ts';
import { JOB_COLUMNS, jobMigrations, type JobRow, pendingMigrations, QueueCore } from './queue-core.ts';

export interface SqliteQueueOptions {
  /** Database file, created if missing. Not `:memory:`: a queue must survive the process. */
  path: string;
  /**
   * How long a write waits for another process's lock before failing, ms. Default 5000. The
   * wait blocks this thread; a failed enqueue surfaces as 503.
   */
  busyTimeoutMs?: number;
  /** Most enqueues in one transaction. Default 512. */
  maxBatch?: number;
  /** Most enqueues accepted but not yet committed before `enqueue()` refuses. Default 10000. */
  maxWaiting?: number;
  /**
   * While a deliverer waits for work, how often to check whether another process changed the
   * file (`PRAGMA data_version`, no disk read), ms. Default 250. Changes made through this
   * instance wake waiters at once.
   */
  pollMs?: number;
  /** See `CoreOptions.commitTimeoutMs` (queue-core.ts). Default 5000. */
  commitTimeoutMs?: number;
  /** See `CoreOptions.instance` (queue-core.ts): who claims. Default unique to the process. */
  instance?: string;
  /** Clock, ms since the epoch. Default `Date.now`; tests inject one to move time. */
  now?: () => number;
}

const MIGRATIONS = jobMigrations('defer_jobs', 'defer_jobs', {
  text: 'TEXT',
  json: 'TEXT',
  blob: 'BLOB',
  int: 'INTEGER',
  time: 'INTEGER',
});

/** The SQLite dialect of the queue core (queue-core.ts). */
export class SqliteQueue extends QueueCore {
  #db: DatabaseSync;
  #pollMs: number;
  /** Whether the connection is in synchronous=FULL (see #write). */
  #durable = true;
  #pollTimer: NodeJS.Timeout | undefined;
  #dataVersion = 0;
  #sql: ReturnType<typeof prepare>;
  #listSql = new Map<string, StatementSync>();

  /** Opens (creating or migrating) the database; throws `QueueOptionError` on a bad option. */
  constructor(options: SqliteQueueOptions) {
    if (typeof options !== 'object' || options === null)
      throw new QueueOptionError('options', 'an object', options);
    if (typeof options.path !== 'string' || options.path === '' || options.path.startsWith(':memory:')) {
      throw new QueueOptionError('path', 'a file path', options.path);
    }
    if (options.now !== undefined && typeof options.now !== 'function') {
      throw new QueueOptionError('now', 'a function', options.now);
    }
    // One writer at a time: the write lock is the database's.
    super(options, { maxBatchMax: 100_000, enqueueConcurrency: 1 });
    const busyTimeoutMs = intOption(options, 'busyTimeoutMs', 0, 600_000, 5000);
    this.#pollMs = intOption(options, 'pollMs', 1, 60_000, 250);

    try {
      this.#db = new DatabaseSync(options.path, { timeout: busyTimeoutMs });
    } catch (err) {
      throw new Error(`cannot open the queue database "${options.path}": ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      this.#db.exec('PRAGMA journal_mode = WAL');
      this.#db.exec('PRAGMA synchronous = FULL');
      this.#migrate();
      this.#sql = prepare(this.#db);
      this.#dataVersion = this.#readDataVersion();
    } catch (err) {
      this.#db.close();
      throw err;
    }
  }

  protected insertRows(rows: NewRow[], now: number): EnqueueResult[] {
    return this.#write(() => {
      const out: EnqueueResult[] = [];
      for (const row of rows) {
        // Without a key nothing can conflict: the positional insert is twice as fast.
        if (row.key === null) {
          const { id, route, method, url, headers, body, maxAttempts, runAt } = row;
          this.#sql.insertPlain.run(id, route, method, url, headers, body, maxAttempts, runAt, now, now);
          out.push({ id: row.id, duplicate: false });
          continue;
        }
        if (this.#sql.insert.get({ ...row, now }) !== undefined) {
          out.push({ id: row.id, duplicate: false });
          continue;
        }
        // Only the idempotency index can conflict; under the write lock the first job is there.
        const first = this.#sql.byKey.get({ route: row.route, key: row.key }) as { id: string } | undefined;
        if (first === undefined) throw new Error(`idempotency conflict without a stored job (route ${row.route})`);
        out.push({ id: first.id, duplicate: true });
      }
      return out;
    });
  }

  protected claimRows(route: string, limit: number, now: number, leaseUntil: number): JobRow[] {
    // Look before taking the write lock: idle deliverers polling an empty route must not
    // serialize every process's writers behind them.
    if (this.#sql.anyEligible.get({ route, now }) === undefined) return [];
    return this.#write(() => {
      this.#sql.reapExpired.run({ route, now });
      return this.#sql.claim.all({ route, now, limit, leaseUntil, me: this.instance }) as unknown as JobRow[];
    }, false);
  }

  protected completeIds(ids: string[], now: number): boolean[] {
    const me = this.instance;
    return this.#write(() => ids.map((id) => Number(this.#sql.complete.run({ id, now, me }).changes) > 0), false);
  }

  protected renewIds(ids: readonly string[], leaseUntil: number): string[] {
    const params = { ids: JSON.stringify(ids), leaseUntil, me: this.instance };
    const rows = this.#write(() => this.#sql.renew.all(params), false) as Array<{ id: string }>;
    return rows.map((r) => r.id);
  }

  protected releaseOwnRows(now: number): string[] {
    const rows = this.#write(() => this.#sql.releaseOwn.all({ now, me: this.instance })) as Array<{ route: string }>;
    return rows.map((r) => r.route);
  }

  protected failRow(id: string, error: string, retryAt: number | null, now: number): JobState | null {
    const row = this.#write(() => this.#sql.fail.get({ id, error, retryAt, now, me: this.instance }), false) as
      | { state: JobState }
      | undefined;
    return row?.state ?? null;
  }

  protected releaseIds(ids: readonly string[], now: number): string[] {
    const rows = this.#write(() => this.#sql.release.all({ ids: JSON.stringify(ids), now })) as Array<{
      route: string;
    }>;
    return rows.map((r) => r.route);
  }

  protected depthRows(route: string | undefined): Array<{ route: string; state: string; n: number }> {
    return (route === undefined ? this.#sql.depthAll.all() : this.#sql.depthRoute.all({ route })) as Array<{
      route: string;
      state: string;
      n: number;
    }>;
  }

  protected listRows({ route, state, after, limit }: ListQuery): JobRow[] {
    const shape = `${route !== undefined}${state !== undefined}${after !== undefined}`;
    let statement = this.#listSql.get(shape);
    if (statement === undefined) {
      const where = [
        route !== undefined ? 'route = :route' : '',
        state !== undefined ? 'state = :state' : '',
        after !== undefined ? 'id > :after' : '',
      ].filter(Boolean);
      const sql = `SELECT ${JOB_COLUMNS} FROM defer_jobs ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY id LIMIT :limit`;
      this.#listSql.set(shape, (statement = this.#db.prepare(sql)));
    }
    const params: Record<string, string | number> = { limit };
    if (route !== undefined) params.route = route;
    if (state !== undefined) params.state = state;
    if (after !== undefined) params.after = after;
    return statement.all(params) as unknown as JobRow[];
  }

  protected getRow(id: string): JobRow | undefined {
    return this.#sql.get.get({ id }) as unknown as JobRow | undefined;
  }

  protected retryDeadRow(id: string, now: number): string | undefined {
    const row = this.#write(() => this.#sql.retryDead.get({ id, now })) as { route: string } | undefined;
    return row?.route;
  }

  protected retryDeadRows(route: string | undefined, now: number): Array<{ route: string; n: number }> {
    const rows = this.#write(() =>
      route === undefined ? this.#sql.retryAllDead.all({ now }) : this.#sql.retryRouteDead.all({ now, route }),
    ) as Array<{ route: string }>;
    const counts = new Map<string, number>();
    for (const r of rows) counts.set(r.route, (counts.get(r.route) ?? 0) + 1);
    return [...counts].map(([r, n]) => ({ route: r, n }));
  }

  protected deleteRow(id: string): boolean {
    return this.#write(() => Number(this.#sql.delete.run({ id }).changes) > 0);
  }

  protected purgeRows(before: number, limit: number): number {
    return this.#write(() => Number(this.#sql.purge.run({ before, limit }).changes), false);
  }

  protected voidRows(ids: string[], reason: string, now: number): number {
    return this.#write(() => Number(this.#sql.voidRows.run({ ids: JSON.stringify(ids), reason, now }).changes));
  }

  protected pingStore(): void {
    this.#sql.dataVersion.get();
  }

  protected closeStore(): void {
    clearTimeout(this.#pollTimer);
    this.#pollTimer = undefined;
    this.#db.close();
  }

  /**
   * Other processes' commits do not reach our WakeHub: while someone waits, poll
   * `data_version` (it changes only when another connection commits) and wake every waiter.
   */
  protected override watch(): void {
    if (this.#pollTimer !== undefined || this.closed || this.hub.waiting === 0) return;
    const tick = () => {
      this.#pollTimer = undefined;
      if (this.closed || this.hub.waiting === 0) return;
      try {
        const version = this.#readDataVersion();
        if (version !== this.#dataVersion) {
          this.#dataVersion = version;
          this.hub.wakeAll();
        }
      } catch {
        this.hub.wakeAll(); // let the deliverer's claim surface the error
      }
      this.watch();
    };
    this.#pollTimer = setTimeout(tick, this.#pollMs);
    this.#pollTimer.unref();
  }

  /**
   * One write transaction; counts the commit. Throws (after rolling back) on any error.
   *
   * `durable: false` commits without an fsync (WAL with synchronous=NORMAL), for the
   * deliverers' bookkeeping — claims, completions, failures, purges — which are on the
   * delivery path and would otherwise cost one fsync each (issue 6: 28% of a deliverer's CPU).
   * A process crash loses none of them (the WAL is written before COMMIT returns); a power
   * loss may roll back the last few, which means at most another delivery of a job — what
   * at-least-once allows. The next durable commit (an enqueue) fsyncs the WAL and with it
   * every earlier frame, so an acknowledged enqueue never depends on a non-durable one.
   */
  #write<T>(fn: () => T, durable = true): T {
    const db = this.#db;
    if (durable !== this.#durable) {
      db.exec(durable ? 'PRAGMA synchronous = FULL' : 'PRAGMA synchronous = NORMAL');
      this.#durable = durable;
    }
    db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      db.exec('COMMIT');
      this.commits++;
      return result;
    } catch (err) {
      if (db.isOpen && db.isTransaction) db.exec('ROLLBACK');
      throw err;
    }
  }

  #migrate(): void {
    this.#write(() => {
      this.#db.exec('CREATE TABLE IF NOT EXISTS defer_schema_version (version INTEGER NOT NULL)');
      const row = this.#db.prepare('SELECT max(version) AS version FROM defer_schema_version').get() as {
        version: number | null;
      };
      for (const [version, sql] of pendingMigrations(row.version ?? 0, MIGRATIONS)) {
        this.#db.exec(sql);
        this.#db.prepare('INSERT INTO defer_schema_version (version) VALUES (?)').run(version);
      }
    });
  }

  #readDataVersion(): number {
    return Number((this.#sql.dataVersion.get() as { data_version: number }).data_version);
  }
}

function prepare(db: DatabaseSync) {
  return {
    dataVersion: db.prepare('PRAGMA data_version'),
    insert: db.prepare(
      `INSERT INTO defer_jobs (id, route, method, url, headers, body, idempotency_key, attempts, max_attempts,
         state, run_at, created_at, updated_at)
       VALUES (:id, :route, :method, :url, :headers, :body, :key, 0, :maxAttempts, 'pending', :runAt, :now, :now)
       ON CONFLICT (route, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
       RETURNING id`,
    ),
    insertPlain: db.prepare(
      `INSERT INTO defer_jobs (id, route, method, url, headers, body, idempotency_key, attempts, max_attempts,
         state, run_at, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, NULL, 0, ?, 'pending', ?, ?, ?)`,
    ),
    byKey: db.prepare('SELECT id FROM defer_jobs WHERE route = :route AND idempotency_key = :key'),
    anyEligible: db.prepare(
      `SELECT 1 FROM defer_jobs WHERE route = :route AND state = 'pending' AND run_at <= :now
       UNION ALL
       SELECT 1 FROM defer_jobs WHERE route = :route AND state = 'inflight' AND lease_until <= :now
       LIMIT 1`,
    ),
    reapExpired: db.prepare(
      `UPDATE defer_jobs SET state = 'dead', lease_until = NULL, last_error = 'lease expired', updated_at = :now
       WHERE route = :route AND state = 'inflight' AND lease_until <= :now AND attempts >= max_attempts`,
    ),
    // Expired leases first (they waited longest), then due jobs by run_at; both walk an index.
    claim: db.prepare(
      `UPDATE defer_jobs SET state = 'inflight', attempts = attempts + 1, lease_until = :leaseUntil,
         claimed_by = :me, updated_at = :now
       WHERE id IN (
         SELECT id FROM (SELECT id FROM defer_jobs WHERE route = :route AND state = 'inflight'
                           AND lease_until <= :now ORDER BY lease_until LIMIT :limit)
         UNION ALL
         SELECT id FROM (SELECT id FROM defer_jobs WHERE route = :route AND state = 'pending'
                           AND run_at <= :now ORDER BY run_at, id LIMIT :limit)
         LIMIT :limit)
       RETURNING ${JOB_COLUMNS}`,
    ),
    complete: db.prepare(
      `UPDATE defer_jobs SET state = 'done', lease_until = NULL, updated_at = :now
       WHERE id = :id AND state = 'inflight' AND claimed_by = :me`,
    ),
    renew: db.prepare(
      `UPDATE defer_jobs SET lease_until = :leaseUntil
       WHERE state = 'inflight' AND claimed_by = :me AND id IN (SELECT value FROM json_each(:ids))
       RETURNING id`,
    ),
    releaseOwn: db.prepare(
      `UPDATE defer_jobs SET state = 'pending', attempts = max(attempts - 1, 0), lease_until = NULL,
         updated_at = :now
       WHERE state = 'inflight' AND claimed_by = :me
       RETURNING route`,
    ),
    fail: db.prepare(
      `UPDATE defer_jobs SET
         state = CASE WHEN :retryAt IS NULL OR attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
         run_at = CASE WHEN :retryAt IS NULL OR attempts >= max_attempts THEN run_at ELSE :retryAt END,
         lease_until = NULL, last_error = :error, updated_at = :now
       WHERE id = :id AND state = 'inflight' AND claimed_by = :me
       RETURNING state`,
    ),
    release: db.prepare(
      `UPDATE defer_jobs SET state = 'pending', attempts = max(attempts - 1, 0), lease_until = NULL,
         updated_at = :now
       WHERE state = 'inflight' AND id IN (SELECT value FROM json_each(:ids))
       RETURNING route`,
    ),
    depthAll: db.prepare('SELECT route, state, count(*) AS n FROM defer_jobs GROUP BY route, state'),
    depthRoute: db.prepare(
      'SELECT route, state, count(*) AS n FROM defer_jobs WHERE route = :route GROUP BY state',
    ),
    get: db.prepare(`SELECT ${JOB_COLUMNS} FROM defer_jobs WHERE id = :id`),
    retryDead: db.prepare(
      `UPDATE defer_jobs SET state = 'pending', attempts = 0, run_at = :now, lease_until = NULL, updated_at = :now
       WHERE id = :id AND state = 'dead'
       RETURNING route`,
    ),
    retryAllDead: db.prepare(
      `UPDATE defer_jobs SET state = 'pending', attempts = 0, run_at = :now, lease_until = NULL, updated_at = :now
       WHERE state = 'dead'
       RETURNING route`,
    ),
    retryRouteDead: db.prepare(
      `UPDATE defer_jobs SET state = 'pending', attempts = 0, run_at = :now, lease_until = NULL, updated_at = :now
       WHERE route = :route AND state = 'dead'
       RETURNING route`,
    ),
    delete: db.prepare('DELETE FROM defer_jobs WHERE id = :id'),
    voidRows: db.prepare(
      `UPDATE defer_jobs SET state = 'dead', last_error = :reason, updated_at = :now
       WHERE state = 'pending' AND attempts = 0 AND id IN (SELECT value FROM json_each(:ids))`,
    ),
    purge: db.prepare(
      `DELETE FROM defer_jobs WHERE id IN (
         SELECT id FROM defer_jobs WHERE state = 'done' AND updated_at < :before LIMIT :limit)`,
    ),
  };
}
