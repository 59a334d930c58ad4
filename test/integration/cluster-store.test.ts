/**
 * The cluster store on a real PostgreSQL, below the gateway:
 * - housekeeping: `cluster_changes` is a log for people, kept to its newest lines instead of
 *   growing for as long as the cluster lives; the overlay row, which gateways catch up from,
 *   is untouched by the pruning;
 * - two live gateways with one registry id are told apart from a restart: the twins log an
 *   error; a gateway taking over the row a crashed predecessor left does not.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { ClusterStore, type ClusterStoreOptions } from '../../src/cluster/store.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { until } from '../helpers/index.ts';
import { dropSchema, newSchemaName, PG_URL, pgQuery } from '../helpers/pg.ts';

/** A store on `schema` as gateway `id` on `host`, its log lines collected in `lines`. */
function storeFor(
  schema: string,
  id: string,
  host: string,
  lines: string[],
  extra: Pick<ClusterStoreOptions, 'keepChanges' | 'housekeepingMs'> = {},
): ClusterStore {
  const log = createLogger(
    'info',
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    }),
  );
  return new ClusterStore({
    spec: { url: PG_URL, schema, instance: id, heartbeatMs: 100, goneAfterMs: 1000 },
    id,
    host,
    log,
    onChange: async () => {},
    report: async () => ({ config_version: 1, overlay_version: 0, report: {} }),
    ...extra,
  });
}

test('cluster_changes keeps its newest lines; the overlay stays the latest', async (t) => {
  const schema = newSchemaName('cluster');
  const store = storeFor(schema, 'a', 'test', [], { keepChanges: 3, housekeepingMs: 50 });
  t.after(async () => {
    await store.close();
    await dropSchema(schema);
  });
  await store.start();
  let version = store.version;
  for (let i = 1; i <= 8; i++) version = await store.write({ created: {}, deleted: [], targets: {}, n: i }, version, `change ${i}`);
  assert.equal(version, 8);
  const lines = async () =>
    (await pgQuery<{ version: string; change: string }>(`SELECT version, change FROM "${schema}".cluster_changes ORDER BY version`)).rows;
  await until(async () => (await lines()).length === 3, 'pruned to 3 lines', 5000);
  assert.deepEqual(
    (await lines()).map((r) => [Number(r.version), r.change]),
    [
      [6, 'change 6'],
      [7, 'change 7'],
      [8, 'change 8'],
    ],
  );
  const stored = await store.read();
  assert.equal(Number(stored.version), 8);
  assert.equal((stored.overlay as { n: number }).n, 8);
});

test('two live gateways with one instance id are reported; a restart over a crashed row is not', async (t) => {
  const schema = newSchemaName('cluster');
  const aLines: string[] = [];
  const bLines: string[] = [];
  const a = storeFor(schema, 'same', 'host-a', aLines);
  const b = storeFor(schema, 'same', 'host-b', bLines);
  t.after(async () => {
    await a.close();
    await b.close();
    await dropSchema(schema);
  });
  await a.start();
  await b.start();
  await until(() => a.twin && b.twin, 'both see the twin', 5000);
  const said = (lines: string[]) => lines.filter((l) => JSON.parse(l).msg.includes('uses the same instance id'));
  await until(() => said(aLines).length > 0 && said(bLines).length > 0, 'both log it', 5000);
  const line = JSON.parse(said(aLines)[0]);
  assert.equal(line.level, 'error');
  assert.equal(line.other.host, 'host-b');
  // Said once per episode, however many beats it lasts.
  const before = said(aLines).length;
  const beats = 5;
  for (let i = 0; i < beats; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(said(aLines).length, before);
  assert.equal(before, 1);

  // A crashed predecessor's row (another pid, never beating again) is taken over quietly.
  const schema2 = newSchemaName('cluster');
  const cLines: string[] = [];
  // A first store makes the schema and leaves cleanly; then the row of a crashed one is left.
  const seed = storeFor(schema2, 'solo', 'host-c', []);
  await seed.start();
  await seed.close();
  await pgQuery(
    `INSERT INTO "${schema2}".cluster_instances (id, host, pid, started_at, last_seen, config_version, overlay_version)
     VALUES ('solo', 'host-c', 999999, 1, (extract(epoch from clock_timestamp()) * 1000)::int8, 1, 0)`,
  );
  const c = storeFor(schema2, 'solo', 'host-c', cLines);
  t.after(async () => {
    await c.close();
    await dropSchema(schema2);
  });
  await c.start();
  const seen = async () =>
    (await pgQuery<{ pid: number }>(`SELECT pid FROM "${schema2}".cluster_instances WHERE id = 'solo'`)).rows[0]?.pid;
  await until(async () => (await seen()) === process.pid, 'the new store owns the row', 5000);
  for (let i = 0; i < beats; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(c.twin, false);
  assert.deepEqual(said(cLines), []);
});
