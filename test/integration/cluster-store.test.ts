/**
 * The cluster store's own housekeeping on a real PostgreSQL: `cluster_changes` is a log for
 * people, kept to its newest lines instead of growing for as long as the cluster lives; the
 * overlay row, which gateways catch up from, is untouched by the pruning.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ClusterStore } from '../../src/cluster/store.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { until } from '../helpers/index.ts';
import { dropSchema, newSchemaName, PG_URL, pgQuery } from '../helpers/pg.ts';

test('cluster_changes keeps its newest lines; the overlay stays the latest', async (t) => {
  const schema = newSchemaName('cluster');
  const store = new ClusterStore({
    spec: { url: PG_URL, schema, instance: 'a', heartbeatMs: 100, goneAfterMs: 1000 },
    id: 'a',
    host: 'test',
    log: createLogger('silent'),
    onChange: async () => {},
    report: async () => ({ config_version: 1, overlay_version: 0, report: {} }),
    keepChanges: 3,
    housekeepingMs: 50,
  });
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
