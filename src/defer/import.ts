/**
 * `manifold queue import --from asyncproxy` (issue 13 item 3): the requests waiting in
 * asyncproxy's PostgreSQL table `proxy_requests(id, timestamp, method, header, body,
 * origin_url, attempt)` (its migrations) become jobs of a Manifold `defer` route, batch by
 * batch, each batch one transaction.
 *
 * Nothing is lost or delivered twice when an import stops half way and is run again:
 * - the rows of a batch are locked (`FOR UPDATE SKIP LOCKED`, as asyncproxy claims them, so a
 *   running asyncproxy and the import never take the same row), stored, and deleted;
 * - when the queue is PostgreSQL on the same database, the jobs are inserted and the rows
 *   deleted in that one transaction (PgQueue.transact): both happen or neither;
 * - otherwise (SQLite, or another database) the jobs are committed first, then the rows are
 *   deleted; each job's idempotency key is `asyncproxy:<row id>`, so a batch stored before an
 *   interruption and imported again finds its jobs already there and adds none.
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createLogger } from '../observability/logger.ts';
import { isHopByHop } from '../proxy/headers.ts';
import type { Route } from '../routing/route.ts';
import { ATTEMPT_HEADER, JOB_ID_HEADER } from './delivery.ts';
import { openQueue } from './open.ts';
import { databaseOf, postgresUrl } from './pg-conn.ts';
import { PgQueue } from './pg-queue.ts';
import type { HeaderPairs, JobInput, Queue } from './queue.ts';
import { compileQueue, isDeferRoute, type QueueConfig } from './spec.ts';

/** One row of asyncproxy's table, as its migrations leave it. */
export interface AsyncproxyRow {
  id: string;
  timestamp: Date;
  method: string;
  /** JSON of Go's `http.Header`: `{"Name": ["v1", "v2"]}`. */
  header: string;
  body: string | null;
  origin_url: string;
  /** The attempt this row is queued for: 1 = its first delivery from the queue. */
  attempt: number;
}

export interface ImportOptions {
  /** asyncproxy's database (a postgres:// URL). */
  source: string;
  /** `proxy_requests` or `schema.proxy_requests`. */
  table: string;
  /** The defer route the jobs belong to. */
  route: string;
  /** The route's `max_attempts`; a row's earlier attempts are taken off it. */
  maxAttempts: number;
  queue: Queue;
  /** Rows per transaction. */
  batch: number;
  /** Most rows moved by this run; null = all. */
  limit: number | null;
  /** Called after each committed batch with the totals so far. */
  progress?: (moved: number) => void;
}

export interface ImportResult {
  /** Rows moved (deleted from the table): now jobs of the route. */
  moved: number;
  /** Of those, rows whose job was already there (stored by an interrupted run). */
  already: number;
  /** Whether jobs and deletes shared one transaction (same PostgreSQL database). */
  sameTransaction: boolean;
}

export const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;
/** Headers the gateway sets itself on every delivery. */
const RESERVED = new Set(['content-length', 'host', JOB_ID_HEADER, ATTEMPT_HEADER]);

/** A row as the job asyncproxy would have sent: same method, path and query, headers, body. */
export function rowToJob(row: AsyncproxyRow, route: string, maxAttempts: number): JobInput {
  const headers: HeaderPairs = [];
  const parsed = JSON.parse(row.header) as Record<string, unknown> | null;
  for (const [name, values] of Object.entries(parsed ?? {})) {
    const lower = name.toLowerCase();
    if (RESERVED.has(lower) || isHopByHop(lower, null)) continue;
    for (const v of Array.isArray(values) ? values : [values]) headers.push([name, String(v)]);
  }
  // Go's r.URL.String() of a server request is its request target: "/path?query".
  let url = row.origin_url;
  if (!url.startsWith('/')) {
    const u = new URL(url, 'http://origin.invalid');
    url = `${u.pathname}${u.search}`;
  }
  const earlier = Math.max(0, row.attempt - 1);
  return {
    route,
    method: row.method,
    url,
    headers,
    body: Buffer.from(row.body ?? '', 'utf8'),
    idempotencyKey: `asyncproxy:${row.id}`,
    maxAttempts: Math.max(1, maxAttempts - earlier),
  };
}

function quoteTable(table: string): string {
  return table
    .split('.')
    .map((p) => `"${p}"`)
    .join('.');
}

/** Moves the waiting rows; resolves with the counts once the table is empty (or `limit` met). */
export async function importAsyncproxy(o: ImportOptions): Promise<ImportResult> {
  const t = quoteTable(o.table);
  const select = `SELECT id, timestamp, method, header, body, origin_url, attempt FROM ${t}
                  ORDER BY timestamp, id LIMIT $1 FOR UPDATE SKIP LOCKED`;
  const remove = `DELETE FROM ${t} WHERE id = ANY($1::varchar[])`;
  const pgQueue = o.queue instanceof PgQueue ? o.queue : null;
  const same = pgQueue !== null && pgQueue.database === databaseOf(o.source);
  let moved = 0;
  let already = 0;
  const want = () => Math.min(o.batch, o.limit === null ? o.batch : o.limit - moved);
  if (same) {
    while (want() > 0) {
      let n = 0;
      const inserted = await pgQueue.transact(async (client) => {
        const { rows } = await client.query<AsyncproxyRow>(select, [want()]);
        n = rows.length;
        if (n > 0) await client.query(remove, [rows.map((r) => r.id)]);
        return rows.map((r) => rowToJob(r, o.route, o.maxAttempts));
      });
      if (n === 0) break;
      moved += n;
      already += n - inserted;
      o.progress?.(moved);
    }
    return { moved, already, sameTransaction: true };
  }
  const client = new pg.Client({ connectionString: o.source });
  await client.connect();
  try {
    while (want() > 0) {
      await client.query('BEGIN');
      try {
        const { rows } = await client.query<AsyncproxyRow>(select, [want()]);
        if (rows.length === 0) {
          await client.query('COMMIT');
          break;
        }
        // Stored (durably) before the rows go: an interruption here leaves rows whose jobs
        // exist, which the idempotency keys recognise on the next run.
        const results = await Promise.all(rows.map((r) => o.queue.enqueue(rowToJob(r, o.route, o.maxAttempts))));
        await client.query(remove, [rows.map((r) => r.id)]);
        await client.query('COMMIT');
        moved += rows.length;
        already += results.filter((r) => r.duplicate).length;
        o.progress?.(moved);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    }
  } finally {
    await client.end();
  }
  return { moved, already, sameTransaction: false };
}

export const IMPORT_USAGE = `Usage:
  manifold queue import --from asyncproxy [--url CONN] [--table NAME] [--batch N] [--limit N]
                        [--route ID] [--config FILE | --asyncproxy]

Moves the requests waiting in asyncproxy's PostgreSQL table into the queue of the config that
\`manifold\` would run with (asyncproxy's config.yaml, or --config), one transaction per batch.

  --from asyncproxy   the source kind (the only one)
  --url CONN          asyncproxy's database, libpq "host=… dbname=…" or postgres://… (default:
                      db.connection_string of asyncproxy's config, else the config's queue.url)
  --table NAME        the table, optionally schema.table (default proxy_requests)
  --batch N           rows per transaction (default 500)
  --limit N           stop after N rows (default: all)
  --route ID          the defer route the jobs join (default: the config's only defer route)
`;

const IMPORT_OPTIONS = {
  from: { type: 'string' },
  url: { type: 'string' },
  table: { type: 'string' },
  batch: { type: 'string' },
  limit: { type: 'string' },
  route: { type: 'string' },
  config: { type: 'string', short: 'c' },
  asyncproxy: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Thrown for a usage error; the CLI prints it with the usage and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

function count(flag: string, text: string | undefined, dflt: number | null): number | null {
  if (text === undefined) return dflt;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new UsageError(`--${flag} must be a whole number of at least 1`);
  return Number(text);
}

/**
 * What the import reads of the loaded config (config/load.ts `LoadedConfig` is one): the file
 * name, the queue block and the served routes; narrow, so defer/ need not import config/ (issue 11).
 */
export interface ImportConfig {
  readonly file: string;
  readonly config: { readonly queue: QueueConfig };
  readonly compiled: { readonly routes: readonly Route[] };
}

/**
 * `manifold queue import …`: `load` reads the config as `manifold` would (with `--config` /
 * `--asyncproxy`), so the target queue and route are the ones the gateway delivers from.
 * Writes one line per batch and the total to `out`; resolves with the result.
 */
export async function queueImportCommand(
  argv: string[],
  load: (values: { config?: string; asyncproxy?: boolean }) => ImportConfig,
  out: NodeJS.WritableStream,
): Promise<ImportResult | null> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: IMPORT_OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(IMPORT_USAGE);
    return null;
  }
  if (positionals.join(' ') !== 'import') throw new UsageError(`unknown command "queue ${positionals.join(' ')}"`);
  if (values.from !== 'asyncproxy') throw new UsageError('--from asyncproxy is required (the only source)');
  const table = values.table ?? 'proxy_requests';
  if (!TABLE_NAME.test(table)) throw new UsageError('--table must be a name or schema.name');
  const batch = count('batch', values.batch, 500)!;
  const limit = count('limit', values.limit, null);
  const loaded = load({ config: values.config, asyncproxy: values.asyncproxy });
  const defers = loaded.compiled.routes.filter(isDeferRoute);
  const route = values.route === undefined ? defers.length === 1 ? defers[0] : undefined : defers.find((r) => r.id === values.route);
  if (route === undefined)
    throw new UsageError(
      values.route === undefined
        ? `${loaded.file} has ${defers.length} defer routes: name one with --route (${defers.map((r) => r.id).join(', ')})`
        : `${loaded.file} has no defer route "${values.route}"`,
    );
  const spec = compileQueue(loaded.config.queue, []);
  let source: string;
  try {
    const given = values.url ?? spec.url;
    if (given === null) throw new UsageError('--url is required: the queue is not on PostgreSQL');
    source = postgresUrl(given);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`--url: ${(err as Error).message}`);
  }
  const queue = await openQueue(spec, createLogger('warn'));
  try {
    const result = await importAsyncproxy({
      source,
      table,
      route: route.id,
      maxAttempts: route.action.spec.maxAttempts,
      queue,
      batch,
      limit,
      progress: (moved) => out.write(`moved ${moved}\n`),
    });
    out.write(
      `imported ${result.moved} requests from ${table} into route ${route.id}` +
        `${result.already > 0 ? ` (${result.already} were already there from an earlier run)` : ''}` +
        `${result.sameTransaction ? ', each batch in one transaction with its deletes' : ''}\n`,
    );
    return result;
  } finally {
    await queue.close();
  }
}
