/** Issue 7: the `metrics`, `tracing` and target `drain` config keys — defaults and refusals. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatProblem, loadConfigText } from '../../src/config/load.ts';
import { configProblems } from '../helpers/index.ts';

const problems = (yaml: string): string[] => configProblems(yaml).map(formatProblem);

const ROUTE = 'routes: [{ id: r, match: {}, respond: { status: 200 } }]\n';

test('defaults: metrics on at /metrics on the admin port only; trace context on, unsampled', () => {
  const { config } = loadConfigText(ROUTE, 'test.yaml', { env: {} });
  assert.deepEqual(config.metrics, { enabled: true, path: '/metrics', host: '127.0.0.1', asyncproxy: false, port: null });
  assert.deepEqual(config.tracing, { enabled: true, sampled: false });
});

test('metrics.path may not shadow an admin path; metrics.port may not reuse a port; names file and key', () => {
  for (const path of ['/pools', '/pools/metrics', '/stats', '/dashboard/metrics', '/queue', '/']) {
    const p = problems(`metrics: { path: ${path} }\n${ROUTE}`);
    assert.equal(p.length, 1, path);
    assert.match(p[0], /^test\.yaml:1: metrics\.path: .* is an admin API path/);
  }
  assert.deepEqual(problems(`metrics: { path: /prom/metrics }\n${ROUTE}`), []);
  assert.match(problems(`metrics: { path: metrics }\n${ROUTE}`)[0], /metrics\.path/);
  assert.match(
    problems(`listen: { port: 9000 }\nmetrics: { port: 9000 }\n${ROUTE}`)[0],
    /metrics\.port: 9000 is listen\.port/,
  );
  assert.match(problems(`metrics: { port: 8687 }\n${ROUTE}`)[0], /metrics\.port: 8687 is admin\.port/);
  assert.deepEqual(problems(`admin: { enabled: false }\nmetrics: { port: 8687 }\n${ROUTE}`), []);
  assert.match(problems(`metrics: { port: 70000 }\n${ROUTE}`)[0], /metrics\.port/);
  assert.match(problems(`tracing: { sampled: yes }\n${ROUTE}`)[0], /tracing\.sampled: must be boolean/);
  assert.match(problems(`tracing: { colour: red }\n${ROUTE}`)[0], /tracing\.colour: unknown key/);
});

test('route ids starting with "_" are reserved (metric label values such as _none)', () => {
  const p = problems('routes: [{ id: _none, match: {}, respond: { status: 200 } }]\n');
  assert.equal(p.length, 1);
  assert.match(p[0], /routes\[0\]\.id: ids starting with "_" are reserved/);
});

test('a target may start drained; drain must be a boolean', () => {
  const { compiled } = loadConfigText(
    `pools: { p: { targets: [http://127.0.0.1:9001, { url: http://127.0.0.1:9002, drain: true }] } }\n${ROUTE}`,
    'test.yaml',
    { env: {} },
  );
  assert.deepEqual(
    compiled.pools[0].targets.map((t) => t.drain),
    [false, true],
  );
  const p = problems(`pools: { p: { targets: [{ url: http://127.0.0.1:9002, drain: maybe }] } }\n${ROUTE}`);
  assert.equal(p.length, 1);
  assert.match(p[0], /pools\.p\.targets\[0\]/);
});
