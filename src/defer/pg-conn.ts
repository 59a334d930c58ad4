/**
 * PostgreSQL connection strings (issue 13): `queue.url` and asyncproxy's `db.connection_string`
 * take a `postgres://` URL or libpq's `key=value` form (`host=db port=5432 user=app
 * dbname=queue sslmode=disable`, values optionally in single quotes with `\'` and `\\`).
 * This is the one parser; both turn into the URL that `pg` reads.
 *
 * Unknown keys are refused by name rather than dropped, so a setting the operator relies on
 * (say `sslrootcert` misspelt) is never silently lost. The exception is a short list of keys
 * that belong to Go's lib/pq driver (asyncproxy's) and mean nothing to a connection:
 * `binary_parameters`, `disable_prepared_binary_result`.
 */
import type pg from 'pg';

/** libpq keys `pg` understands, as the URL query parameter that carries them. */
const PASSED = new Set([
  'sslmode',
  'sslcert',
  'sslkey',
  'sslrootcert',
  'application_name',
  'fallback_application_name',
  'connect_timeout',
  'options',
  'keepalives',
  'keepalives_idle',
]);
/** Driver settings of lib/pq with no meaning for the connection itself: accepted, ignored. */
const IGNORED = new Set(['binary_parameters', 'disable_prepared_binary_result']);
const URL_FORM = /^postgres(ql)?:\/\//;

export class ConnectionStringError extends Error {
  override name = 'ConnectionStringError';
}

/** `key=value` pairs of a libpq connection string, in order; throws on a syntax error. */
export function parseLibpq(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  let i = 0;
  const n = text.length;
  const skipSpace = () => {
    while (i < n && /\s/.test(text[i])) i++;
  };
  for (;;) {
    skipSpace();
    if (i >= n) return out;
    const start = i;
    while (i < n && /[A-Za-z0-9_]/.test(text[i])) i++;
    const key = text.slice(start, i);
    skipSpace();
    if (key === '' || text[i] !== '=')
      throw new ConnectionStringError(`expected key=value at ${JSON.stringify(text.slice(start, start + 20))}`);
    i++;
    skipSpace();
    let value = '';
    if (text[i] === "'") {
      i++;
      for (;;) {
        if (i >= n) throw new ConnectionStringError(`unterminated quoted value of ${key}`);
        const c = text[i++];
        if (c === "'") break;
        value += c === '\\' && i < n ? text[i++] : c;
      }
    } else {
      while (i < n && !/\s/.test(text[i])) {
        const c = text[i++];
        value += c === '\\' && i < n ? text[i++] : c;
      }
    }
    out.push([key, value]);
  }
}

/**
 * A `postgres://` URL from either form. A URL is returned as given (checked to parse); libpq
 * keys become its parts (`host` that is a socket directory, and `hostaddr`, go in the query).
 */
export function postgresUrl(text: string): string {
  if (URL_FORM.test(text)) {
    try {
      new URL(text);
    } catch {
      throw new ConnectionStringError('is not a valid URL');
    }
    return text;
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text))
    throw new ConnectionStringError('must be a postgres:// URL or a libpq key=value string');
  let user = '';
  let password = '';
  let host = '';
  let port = '';
  let dbname = '';
  const query = new URLSearchParams();
  for (const [key, value] of parseLibpq(text)) {
    if (key === 'user') user = value;
    else if (key === 'password') password = value;
    else if (key === 'host' && !value.startsWith('/')) host = value;
    else if (key === 'host' || key === 'hostaddr') query.set('host', value);
    else if (key === 'port') {
      if (!/^\d{1,5}$/.test(value)) throw new ConnectionStringError(`port must be a number, not ${JSON.stringify(value)}`);
      port = value;
    } else if (key === 'dbname') dbname = value;
    else if (PASSED.has(key)) query.set(key, value);
    else if (!IGNORED.has(key))
      throw new ConnectionStringError(
        `unknown connection key ${JSON.stringify(key)} (known: host, hostaddr, port, user, password, dbname, ${[...PASSED].join(', ')})`,
      );
  }
  const auth = user === '' ? '' : `${encodeURIComponent(user)}${password === '' ? '' : `:${encodeURIComponent(password)}`}@`;
  const hostPart = host.includes(':') ? `[${host}]` : host;
  const q = query.size > 0 ? `?${query.toString()}` : '';
  return `postgres://${auth}${hostPart || (query.has('host') ? '' : 'localhost')}${port ? `:${port}` : ''}/${encodeURIComponent(dbname)}${q}`;
}

/** Host, port and database of a connection: two queues on the same triple share transactions. */
export function databaseOf(url: string): string {
  const u = new URL(url);
  const host = u.searchParams.get('host') ?? u.hostname;
  return `${host}:${u.port || '5432'}/${decodeURIComponent(u.pathname.slice(1))}`;
}

/**
 * Runs `work` in one transaction on a client of `pool`: COMMIT when it resolves; when it throws,
 * ROLLBACK and the client is dropped rather than handed back (its connection may be the fault).
 * The queue (pg-queue.ts) and the cluster store (cluster/store.ts) both write through it.
 */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    broken = err as Error;
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * `client` (new, not connected) LISTENing on `channel`, on a connection of its own (LISTEN
 * holds one). The queue's wake-ups and the cluster store's change notices both come this way.
 * `lost` may run for a client not handed out yet (a failed connect): the owner compares it
 * with the one it holds. Null when the owner closed while connecting (the client is ended).
 * The caller makes the client, so this module (which config/ imports) does not load `pg`.
 */
export async function listenOn(
  client: pg.Client,
  channel: string,
  on: { notification: (payload: string) => void; lost: (client: pg.Client, err: Error) => void },
  isClosed: () => boolean,
): Promise<pg.Client | null> {
  client.on('error', (err) => on.lost(client, err));
  client.on('end', () => on.lost(client, new Error(`LISTEN connection (${channel}) ended`)));
  client.on('notification', (msg) => {
    if (msg.channel === channel && msg.payload) on.notification(msg.payload);
  });
  try {
    await client.connect();
    await client.query(`LISTEN "${channel}"`);
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  if (isClosed()) {
    await client.end().catch(() => {});
    return null;
  }
  return client;
}
