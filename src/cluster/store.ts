/**
 * The cluster store (issue 16): the control plane that several gateways share on PostgreSQL.
 *
 * - One row holds the admin API's overlay (membership.ts) with a version number. A change is
 *   one statement (one transaction): it bumps the version only if the writer saw the latest
 *   (optimistic: no lock is held across the admin call), logs the change, and NOTIFYs at
 *   commit. A writer that was behind gets `StaleOverlay`, catches up and tries again.
 * - Every instance heartbeats its registry row every `cluster.heartbeat`; the same statement
 *   returns the stored version, so a notification lost (LISTEN connection down, a missed
 *   wake-up) heals at the next beat. Times in the registry are the database's clock, so
 *   instances with skewed clocks still agree who is gone.
 * - When PostgreSQL is away every instance serves on with what it has; writes answer 503
 *   `CLUSTER_UNAVAILABLE` at once (no wait per call), and the two transitions — lost and back —
 *   are logged once each. Coming back re-LISTENs and re-reads the overlay.
 *
 * No consensus of our own (DESIGN.md): PostgreSQL orders the writes.
 */
import pg from 'pg';
import { GatewayError } from '../errors.ts';
import { inTransaction, listenOn } from '../defer/pg-conn.ts';
import type { ClusterSpec } from '../config/cluster.ts';
import type { Logger } from '../observability/logger.ts';

/** The stored overlay as read: its parts are checked by the Manager, entry by entry. */
export interface StoredOverlay {
  version: number;
  overlay: unknown;
  /** The store holds a lower version than was served (its tables were made again): take it anyway. */
  reset?: boolean;
  /** This instance's count of writes when it was read: a write since makes the read stale (superseded()). */
  writes?: number;
}

/** What an instance publishes in its heartbeat row (issue 16 item 3 reads `report`). */
export interface InstanceReport {
  /** The local config version this instance serves (Manager.version). */
  config_version: number;
  /** The stored overlay version this instance serves. */
  overlay_version: number;
  /** Free-form figures (stats, per-target counters, queue depth), summed by `?scope=cluster`. */
  report: Record<string, unknown>;
}

export const INSTANCE_STATES = Object.freeze({
  /** Heartbeat seen within `cluster.gone_after`. */
  UP: 'up',
  /** No heartbeat for `cluster.gone_after`: stopped, killed or cut off. */
  GONE: 'gone',
} as const);

export interface InstanceView {
  id: string;
  host: string;
  pid: number;
  state: (typeof INSTANCE_STATES)[keyof typeof INSTANCE_STATES];
  /** This very instance (the one answering). */
  self: boolean;
  config_version: number;
  overlay_version: number;
  started_at: string;
  last_seen: string;
  /** ms since the last heartbeat, by the database's clock. */
  age_ms: number;
  report: Record<string, unknown>;
}

interface BeatRow {
  version: number;
  others: number;
  prev_host: string | null;
  prev_pid: number | null;
  prev_started_at: number | null;
}

/** A write based on an overlay version that is no longer the latest. */
export class StaleOverlay extends Error {
  override name = 'StaleOverlay';
}

export interface ClusterStoreOptions {
  spec: ClusterSpec;
  id: string;
  host: string;
  log: Logger;
  /** A newer stored overlay (notification, version check or catching up); called one at a time. */
  onChange: (stored: StoredOverlay) => Promise<void>;
  /** This instance's heartbeat content. */
  report: () => Promise<InstanceReport>;
  /** Lines of `cluster_changes` kept (KEEP_CHANGES), and how often the registry and the log are pruned; tests set small ones. */
  keepChanges?: number;
  housekeepingMs?: number;
}

/** A connection attempt or a statement longer than this counts as the store being away. */
const CONNECT_TIMEOUT_MS = 2000;
const QUERY_TIMEOUT_MS = 3000;
/** Rows of instances gone this long are deleted (at most once a minute). */
const FORGET_AFTER_MS = 24 * 3600_000;
/**
 * `cluster_changes` is a log for people (what changed, who, when); nothing reads it to catch
 * up (the overlay row is the truth), so it keeps the newest this many lines, pruned with the
 * registry (at most once a minute) instead of growing for as long as the cluster lives.
 */
export const KEEP_CHANGES = 10_000;
const NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::int8';

/** ms-epoch columns are int8, which `pg` returns as strings; these fit a double exactly. */
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 && format !== 'binary'
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

function statements(s: string) {
  return {
    migrate: [
      `CREATE SCHEMA IF NOT EXISTS ${s}`,
      `CREATE TABLE IF NOT EXISTS ${s}.cluster_state (
         id int PRIMARY KEY CHECK (id = 1), version int8 NOT NULL, overlay jsonb NOT NULL,
         updated_at int8 NOT NULL, updated_by text)`,
      `INSERT INTO ${s}.cluster_state (id, version, overlay, updated_at)
         VALUES (1, 0, '{"created":{},"deleted":[],"targets":{}}', ${NOW_MS}) ON CONFLICT (id) DO NOTHING`,
      `CREATE TABLE IF NOT EXISTS ${s}.cluster_changes (
         version int8 PRIMARY KEY, change text NOT NULL, instance text NOT NULL, at int8 NOT NULL)`,
      `CREATE TABLE IF NOT EXISTS ${s}.cluster_instances (
         id text PRIMARY KEY, host text NOT NULL, pid int NOT NULL, started_at int8 NOT NULL,
         last_seen int8 NOT NULL, config_version int8 NOT NULL, overlay_version int8 NOT NULL,
         report jsonb NOT NULL DEFAULT '{}')`,
    ],
    read: `SELECT version, overlay FROM ${s}.cluster_state WHERE id = 1`,
    // One statement, one transaction: the new overlay and version, the change log line, the NOTIFY.
    write: `WITH next AS (
              UPDATE ${s}.cluster_state SET overlay = $1::jsonb, version = version + 1, updated_at = ${NOW_MS},
                updated_by = $3
              WHERE id = 1 AND version = $2 RETURNING version
            )
            INSERT INTO ${s}.cluster_changes (version, change, instance, at)
            SELECT version, $4, $3, ${NOW_MS} FROM next
            RETURNING version, pg_notify($5, version::text)`,
    // `prev` is the row as it was before this beat (a CTE sees the statement's snapshot).
    beat: `WITH prev AS (SELECT host, pid, started_at FROM ${s}.cluster_instances WHERE id = $1)
           INSERT INTO ${s}.cluster_instances
             (id, host, pid, started_at, last_seen, config_version, overlay_version, report)
           VALUES ($1, $2, $3, $4, ${NOW_MS}, $5, $6, $7::jsonb)
           ON CONFLICT (id) DO UPDATE SET host = $2, pid = $3, started_at = $4, last_seen = ${NOW_MS},
             config_version = $5, overlay_version = $6, report = $7::jsonb
           RETURNING (SELECT version FROM ${s}.cluster_state WHERE id = 1) AS version,
             (SELECT count(*)::int FROM ${s}.cluster_instances WHERE id <> $1 AND last_seen > ${NOW_MS} - $8) AS others,
             (SELECT host FROM prev) AS prev_host, (SELECT pid FROM prev) AS prev_pid,
             (SELECT started_at FROM prev) AS prev_started_at`,
    list: `SELECT id, host, pid, started_at, last_seen, config_version, overlay_version, report,
             ${NOW_MS} AS now FROM ${s}.cluster_instances ORDER BY id`,
    leave: `DELETE FROM ${s}.cluster_instances WHERE id = $1 AND pid = $2`,
    forget: `DELETE FROM ${s}.cluster_instances WHERE last_seen < ${NOW_MS} - $1`,
    prune: `DELETE FROM ${s}.cluster_changes WHERE version <= (SELECT version FROM ${s}.cluster_state WHERE id = 1) - $1`,
  };
}

export class ClusterStore {
  readonly id: string;
  readonly #spec: ClusterSpec;
  readonly #host: string;
  readonly #log: Logger;
  readonly #onChange: ClusterStoreOptions['onChange'];
  readonly #report: ClusterStoreOptions['report'];
  readonly #sql: ReturnType<typeof statements>;
  readonly #channel: string;
  readonly #clientConfig: pg.ClientConfig;
  readonly #pool: pg.Pool;
  readonly #startedAt = Date.now();
  #listener: pg.Client | null = null;
  #migrated = false;
  /** null until the first contact: the first transition is logged either way. */
  #available: boolean | null = null;
  /** Highest stored version handed to onChange (or written by this instance). */
  #known = 0;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | null = null;
  #again = false;
  #closed = false;
  #lastForget = 0;
  #beaten = false;
  /** Successful writes by this instance (see superseded()). */
  #writes = 0;
  #twin = false;
  readonly #keepChanges: number;
  readonly #housekeepingMs: number;
  #peers = 1;
  #lastReport: InstanceReport = { config_version: 0, overlay_version: 0, report: {} };

  constructor(options: ClusterStoreOptions) {
    this.#spec = options.spec;
    this.id = options.id;
    this.#host = options.host;
    this.#log = options.log.child({ component: 'cluster' });
    this.#onChange = options.onChange;
    this.#report = options.report;
    this.#keepChanges = options.keepChanges ?? KEEP_CHANGES;
    this.#housekeepingMs = options.housekeepingMs ?? 60_000;
    const s = `"${options.spec.schema}"`;
    this.#sql = statements(s);
    this.#channel = `${options.spec.schema}.cluster`;
    this.#clientConfig = {
      connectionString: options.spec.url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      query_timeout: QUERY_TIMEOUT_MS,
      types: TYPES,
    };
    this.#pool = new pg.Pool({ ...this.#clientConfig, max: 3 });
    // A broken idle connection emits here; the next beat notices the store is away.
    this.#pool.on('error', () => {});
  }

  /** True while the last contact with PostgreSQL worked. */
  get available(): boolean {
    return this.#available === true;
  }

  /**
   * Instances up (this one included) at the last heartbeat: what defer limits are divided by
   * (issue 16 item 4). Kept while the store is away: the split stays what it was.
   */
  get peers(): number {
    return this.#peers;
  }

  /** The stored version this instance knows (served or written). */
  get version(): number {
    return this.#known;
  }

  /**
   * First contact (schema, overlay, LISTEN, registry row), then the heartbeat loop. Never
   * throws: with PostgreSQL away the gateway starts on its config file and catches up later.
   */
  async start(): Promise<void> {
    await this.#run();
  }

  /** Stores `overlay` as the version after `expected`; throws StaleOverlay or CLUSTER_UNAVAILABLE. */
  async write(overlay: unknown, expected: number, change: string): Promise<number> {
    if (!this.available || !this.#migrated) throw this.#unavailable();
    let rows: Array<{ version: number }>;
    try {
      ({ rows } = await this.#pool.query<{ version: number }>(this.#sql.write, [
        JSON.stringify(overlay),
        expected,
        this.id,
        change,
        this.#channel,
      ]));
    } catch (err) {
      this.#lost(err as Error);
      throw this.#unavailable(err);
    }
    if (rows.length === 0) throw new StaleOverlay(`stored overlay is newer than version ${expected}`);
    this.#writes++;
    this.#known = Math.max(this.#known, rows[0].version);
    return rows[0].version;
  }

  /**
   * True when this instance wrote since `stored` was read by a heartbeat or a notification:
   * that read may be older than the write (after the tables were made again it even looks like a
   * reset) and must not be served over it. The next beat reads again.
   */
  superseded(stored: StoredOverlay): boolean {
    return stored.writes !== undefined && stored.writes !== this.#writes;
  }

  /** The stored overlay now (for a writer that was behind); throws CLUSTER_UNAVAILABLE. */
  async read(): Promise<StoredOverlay> {
    try {
      const { rows } = await this.#pool.query<StoredOverlay>(this.#sql.read);
      return rows[0];
    } catch (err) {
      this.#lost(err as Error);
      throw this.#unavailable(err);
    }
  }

  /** The instance registry, state decided by the database's clock; throws CLUSTER_UNAVAILABLE. */
  async instances(): Promise<InstanceView[]> {
    if (!this.available || !this.#migrated) throw this.#unavailable();
    type Row = Omit<InstanceView, 'state' | 'self' | 'age_ms' | 'started_at' | 'last_seen'> & {
      started_at: number;
      last_seen: number;
      now: number;
    };
    let rows: Row[];
    try {
      ({ rows } = await this.#pool.query<Row>(this.#sql.list));
    } catch (err) {
      this.#lost(err as Error);
      throw this.#unavailable(err);
    }
    return rows.map((r) => {
      const age = Math.max(0, r.now - r.last_seen);
      return {
        id: r.id,
        host: r.host,
        pid: r.pid,
        state: age <= this.#spec.goneAfterMs ? INSTANCE_STATES.UP : INSTANCE_STATES.GONE,
        self: r.id === this.id,
        config_version: r.config_version,
        overlay_version: r.overlay_version,
        started_at: new Date(r.started_at).toISOString(),
        last_seen: new Date(r.last_seen).toISOString(),
        age_ms: age,
        report: r.report,
      };
    });
  }

  /** Stops the beat, leaves the registry (a clean stop is not "gone"), closes the connections. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#running;
    if (this.available)
      await this.#pool.query(this.#sql.leave, [this.id, process.pid]).catch(() => {});
    const listener = this.#listener;
    this.#listener = null;
    await listener?.end().catch(() => {});
    await this.#pool.end().catch(() => {});
  }

  // ---- internals ----

  #unavailable(cause?: unknown): GatewayError {
    return new GatewayError('CLUSTER_UNAVAILABLE', undefined, cause === undefined ? undefined : { cause });
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#run(), this.#spec.heartbeatMs);
    this.#timer.unref();
  }

  /** One beat at a time; a wake-up during a beat runs another right after it. */
  async #run(): Promise<void> {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    do {
      this.#again = false;
      this.#running = this.#tick();
      await this.#running;
      this.#running = null;
    } while (this.#again && !this.#closed);
    this.#schedule();
  }

  /** Schema (once), LISTEN (when missing), heartbeat + version check, overlay when newer. */
  async #tick(): Promise<void> {
    try {
      if (!this.#migrated) await this.#migrate();
      if (this.#listener === null) await this.#listen();
      // A report that fails (a worker not answering) must not count as the store being away.
      const r = await this.#report().then(
        (report) => (this.#lastReport = report),
        (err: Error) => {
          this.#log.warn({ err: err.message }, 'cluster heartbeat: figures unavailable, the last ones are sent');
          return this.#lastReport;
        },
      );
      const { rows } = await this.#pool.query<BeatRow>(this.#sql.beat, [
        this.id,
        this.#host,
        process.pid,
        this.#startedAt,
        r.config_version,
        r.overlay_version,
        JSON.stringify(r.report),
        this.#spec.goneAfterMs,
      ]);
      this.#peers = 1 + rows[0].others;
      this.#checkTwin(rows[0]);
      this.#back();
      if (rows[0].version !== this.#known) {
        const writes = this.#writes;
        const stored = { ...(await this.#pool.query<StoredOverlay>(this.#sql.read)).rows[0], writes };
        // Lower than known: the tables were dropped and made again. The store is the truth.
        if (stored.version < this.#known) {
          this.#log.warn({ version: stored.version, known: this.#known }, 'cluster store was reset: serving what it holds');
          stored.reset = true;
        }
        if (stored.version !== this.#known) {
          await this.#onChange(stored);
          // A write of ours since the read has gone past it: what it knows is newer.
          if (!this.superseded(stored))
            this.#known = stored.reset ? stored.version : Math.max(this.#known, stored.version);
        }
      }
      if (Date.now() - this.#lastForget > this.#housekeepingMs) {
        this.#lastForget = Date.now();
        await this.#pool.query(this.#sql.forget, [FORGET_AFTER_MS]);
        await this.#pool.query(this.#sql.prune, [this.#keepChanges]);
      }
    } catch (err) {
      this.#lost(err as Error);
    }
  }

  async #migrate(): Promise<void> {
    await inTransaction(this.#pool, async (client) => {
      // Gateways starting together must not race CREATE SCHEMA / CREATE TABLE — nor this with
      // the queue's own migration (pg-queue.ts), which creates the same schema by default:
      // hence the queue's lock key. Concurrent CREATE SCHEMA IF NOT EXISTS can fail otherwise.
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`manifold.defer:${this.#spec.schema}`]);
      for (const sql of this.#sql.migrate) await client.query(sql);
    });
    this.#migrated = true;
  }

  async #listen(): Promise<void> {
    const client = await listenOn(
      new pg.Client(this.#clientConfig),
      this.#channel,
      {
        notification: (payload) => {
          if (Number(payload) > this.#known) void this.#run();
        },
        lost: (lost) => {
          if (this.#listener !== lost) return;
          this.#listener = null;
          lost.end().catch(() => {});
          // The next beat re-LISTENs and re-reads the version: nothing sent meanwhile is lost.
          void this.#run();
        },
      },
      () => this.#closed,
    );
    if (client !== null) this.#listener = client;
  }

  /**
   * Another live gateway with this registry id: the row this beat overwrote was written, since
   * our last beat, by a process that is not this one. (A row left by a crashed predecessor is
   * not that: it never writes again, so a restart is never taken for a twin.) Both keep
   * serving, but they share one registry row, so the cluster counts one gateway too few and
   * splits defer limits wrongly: said loudly, once per episode.
   */
  #checkTwin(row: BeatRow): void {
    const ours = row.prev_host === this.#host && row.prev_pid === process.pid && row.prev_started_at === this.#startedAt;
    const twin = this.#beaten && row.prev_host !== null && !ours;
    this.#beaten = true;
    if (twin && !this.#twin)
      this.#log.error(
        { instance: this.id, other: { host: row.prev_host, pid: row.prev_pid } },
        `cluster: another gateway (${row.prev_host}, pid ${row.prev_pid}) uses the same instance id "${this.id}": give each gateway its own cluster.instance (or leave it unset)`,
      );
    this.#twin = twin;
  }

  /** True while another live gateway beats with this registry id (see #checkTwin). */
  get twin(): boolean {
    return this.#twin;
  }

  #lost(err: Error): void {
    if (this.#closed) return;
    // The schema or a table went away (dropped by hand): create them again at the next beat.
    const code = (err as { code?: string }).code;
    if (code === '42P01' || code === '3F000') this.#migrated = false;
    const listener = this.#listener;
    this.#listener = null;
    void listener?.end().catch(() => {});
    if (this.#available === false) return;
    this.#available = false;
    this.#log.error(
      { err: err.message, instance: this.id },
      'cluster store unreachable: serving the last pools, admin changes refused (503) until it returns',
    );
  }

  #back(): void {
    if (this.#available === true) return;
    const first = this.#available === null;
    this.#available = true;
    this.#log.info(
      { instance: this.id, schema: this.#spec.schema },
      first ? 'cluster store connected' : 'cluster store reachable again: catching up, admin changes accepted',
    );
  }
}
