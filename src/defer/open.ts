/** Opens the store named by the `queue` config block (issue 6). */
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { Logger } from '../observability/logger.ts';
import { PgQueue } from './pg-queue.ts';
import type { Queue } from './queue.ts';
import type { QueueSpec } from './spec.ts';
import { SqliteQueue } from './sqlite-queue.ts';

/**
 * How often a waiting SQLite deliverer checks whether another process (a worker that
 * accepted) committed: `PRAGMA data_version`, no disk read, so a short period is cheap and
 * keeps the accept-to-delivery latency low in cluster mode.
 */
const SQLITE_POLL_MS = 50;

/**
 * The delivering gateway's claimer name (issue 16 item 6): `queue.instance`, else
 * `<hostname>:<listen port>` — stable across restarts, and distinct for gateways sharing a
 * queue (one machine, one port: one gateway). With port 0 there is no stable name: undefined,
 * and the store picks one unique to the process.
 */
export function instanceName(spec: QueueSpec, listenPort: number): string | undefined {
  if (spec.instance !== null) return spec.instance;
  return listenPort > 0 ? `${hostname()}:${listenPort}` : undefined;
}

/** `instance`: who claims through it (`instanceName`); default unique to the process. */
export async function openQueue(spec: QueueSpec, log: Logger, instance?: string): Promise<Queue> {
  if (spec.driver === 'postgres') {
    const { host, database } = describeQueue(spec);
    // The queue's database must answer at start (the start fails, naming the key): an
    // acknowledged job must have somewhere durable to go from the first request on.
    const named = (err: Error) =>
      new Error(`queue.url (PostgreSQL at ${host}, database ${database}): ${err.message}; the queue's database must answer at start`, {
        cause: err,
      });
    return PgQueue.open({
      instance,
      connectionString: spec.url!,
      schema: spec.schema,
      poolSize: spec.poolSize,
      maxWaiting: spec.maxWaiting,
      commitTimeoutMs: spec.commitTimeoutMs,
      onError: (err) => log.warn({ err: err.message }, 'queue: PostgreSQL connection problem'),
    }).catch((err: Error) => {
      throw named(err);
    });
  }
  const path = resolve(spec.path);
  mkdirSync(dirname(path), { recursive: true });
  return new SqliteQueue({
    path,
    busyTimeoutMs: spec.busyTimeoutMs,
    maxWaiting: spec.maxWaiting,
    commitTimeoutMs: spec.commitTimeoutMs,
    pollMs: SQLITE_POLL_MS,
    instance,
  });
}

/** A short description for logs (never the PostgreSQL password). */
export function describeQueue(spec: QueueSpec): Record<string, string> {
  if (spec.driver === 'sqlite') return { driver: 'sqlite', path: resolve(spec.path) };
  const u = new URL(spec.url!);
  return { driver: 'postgres', host: u.host, database: u.pathname.slice(1), schema: spec.schema };
}
