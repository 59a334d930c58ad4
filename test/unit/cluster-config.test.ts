/** Issue 16: the `cluster:` block — defaults, where its URL comes from, and what it refuses. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileCluster } from '../../src/config/cluster.ts';
import { formatProblem, loadConfigText } from '../../src/config/load.ts';
import { configProblems } from '../helpers/index.ts';

const problems = (yaml: string): string[] => configProblems(yaml).map(formatProblem);
const ROUTE = 'routes: [{ id: r, match: {}, respond: { status: 200 } }]\n';

test('off by default', () => {
  const { config } = loadConfigText(ROUTE, 'test.yaml', { env: {} });
  assert.equal(config.cluster.store, null);
  assert.equal(compileCluster(config, []), null);
});

test("the queue's PostgreSQL URL and schema by default; libpq form accepted", () => {
  const { config } = loadConfigText(
    `${ROUTE}queue: { driver: postgres, url: "host=db port=5433 user=app dbname=q", schema: gw }\ncluster: { store: postgres }\n`,
    'test.yaml',
    { env: {} },
  );
  const spec = compileCluster(config, []);
  assert.equal(spec?.url, 'postgres://app@db:5433/q');
  assert.equal(spec?.schema, 'gw');
  assert.equal(spec?.heartbeatMs, 1000);
  assert.equal(spec?.goneAfterMs, 10_000);
});

test('refused: no URL, a bad URL, with state_file, a gone_after shorter than two heartbeats', () => {
  const refused = (yaml: string, re: RegExp) => {
    const found = problems(`${ROUTE}${yaml}\n`);
    assert.equal(found.length, 1, found.join('\n'));
    assert.match(found[0], re);
  };
  refused('cluster: { store: postgres }', /^test\.yaml:\d+: cluster\.url: is required unless queue\.driver is postgres/);
  refused('cluster: { store: postgres, url: "mysql://x" }', /^test\.yaml:\d+: cluster\.url: must be a postgres/);
  refused(
    'state_file: ./s.json\ncluster: { store: postgres, url: "postgres://h/db" }',
    /^test\.yaml:\d+: state_file: cannot be used with cluster\.store/,
  );
  refused(
    'cluster: { store: postgres, url: "postgres://h/db", heartbeat: 1s, gone_after: 1500ms }',
    /^test\.yaml:\d+: cluster\.gone_after: must be at least twice cluster\.heartbeat/,
  );
  refused('cluster: { store: etcd }', /^test\.yaml:\d+: cluster\.store: must be postgres or null/);
  refused('cluster: { stor: postgres }', /cluster\.stor/);
});
