/**
 * PostgreSQL for tests: a fresh schema per test, dropped after it (pg-boss test/hooks.ts style),
 * so tests never see each other's rows and may run in parallel against one database.
 * The server is the local one (trust auth); override with MANIFOLD_TEST_PG_URL.
 */

import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_URL = process.env.MANIFOLD_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A schema name no other test uses (the code under test may create it). */
export function newSchemaName(prefix = 'test'): string {
  return `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
}

/** Run one statement on a short-lived admin connection. */
export async function pgQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  sql: string,
  params: unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return await client.query<R>(sql, params);
  } finally {
    await client.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  // A gateway still beating on the schema can deadlock with the DROP (40P01): PostgreSQL
  // aborts one of the two, and it may be the DROP. Try again.
  for (let attempt = 1; ; attempt++) {
    try {
      await pgQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '40P01' || attempt === 5) throw err;
    }
  }
}

/**
 * A fresh schema name for this test, dropped when it ends. node:test runs `after` hooks in the
 * order they were registered, so the drop runs before cleanups registered later; when that
 * order matters, use `newSchemaName` and call `dropSchema` last in your own cleanup.
 */
export function freshSchema(t: { after: (fn: () => Promise<void>) => void }, prefix?: string): string {
  const schema = newSchemaName(prefix);
  t.after(() => dropSchema(schema));
  return schema;
}
