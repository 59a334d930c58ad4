/** Opens the store named by the `queue` config block (issue 6). */
import { mkdirSync } from 'node:fs';
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

export async function openQueue(spec: QueueSpec, log: Logger): Promise<Queue> {
  if (spec.driver === 'postgres') {
    return PgQueue.open({
      connectionString: spec.url!,
      schema: spec.schema,
      poolSize: spec.poolSize,
      maxWaiting: spec.maxWaiting,
      commitTimeoutMs: spec.commitTimeoutMs,
      onError: (err) => log.warn({ err: err.message }, 'queue: PostgreSQL connection problem'),
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
  });
}

/** A short description for logs (never the PostgreSQL password). */
export function describeQueue(spec: QueueSpec): Record<string, string> {
  if (spec.driver === 'sqlite') return { driver: 'sqlite', path: resolve(spec.path) };
  const u = new URL(spec.url!);
  return { driver: 'postgres', host: u.host, database: u.pathname.slice(1), schema: spec.schema };
}
