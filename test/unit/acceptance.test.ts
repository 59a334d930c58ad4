/** Issue #4 point 1: the `terminal` list compiled into a verdict table. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfigText } from '../../src/config/load.ts';
import { statusRange } from '../../src/lib/statuses.ts';
import { DEFAULT_TERMINAL, Verdicts } from '../../src/strategy/acceptance.ts';

const parseTerminalEntry = (e: number | string) => statusRange(e, 'class');

const accepted = (v: Verdicts) => {
  const out: number[] = [];
  for (let s = 0; s < 1000; s++) if (v.accepts(s)) out.push(s);
  return out;
};

test('the default accepts every status below 500 and nothing else', () => {
  const v = Verdicts.compile(DEFAULT_TERMINAL);
  assert.equal(v.accepts(100), true);
  assert.equal(v.accepts(200), true);
  assert.equal(v.accepts(304), true);
  assert.equal(v.accepts(404), true);
  assert.equal(v.accepts(499), true);
  assert.equal(v.accepts(500), false);
  assert.equal(v.accepts(503), false);
  assert.equal(v.accepts(599), false);
  assert.equal(v.accepts(600), false);
  assert.equal(v.accepts(99), false);
  assert.equal(accepted(v).length, 400);
});

test('a multiple of 100 is its class; other codes are exact; ranges and Nxx', () => {
  assert.deepEqual(parseTerminalEntry(200), [200, 299]);
  assert.deepEqual(parseTerminalEntry(429), [429, 429]);
  assert.deepEqual(parseTerminalEntry('429'), [429, 429]);
  assert.deepEqual(parseTerminalEntry('400'), [400, 499]);
  assert.deepEqual(parseTerminalEntry('500-503'), [500, 503]);
  assert.deepEqual(parseTerminalEntry('200-200'), [200, 200]);
  assert.deepEqual(parseTerminalEntry('3xx'), [300, 399]);
  const v = Verdicts.compile([200, 404, '500-502']);
  assert.deepEqual(accepted(v), [...Array.from({ length: 100 }, (_, i) => 200 + i), 404, 500, 501, 502]);
});

test('invalid entries are reported with their index', () => {
  const problems: Array<[number, string]> = [];
  Verdicts.compile([200, 99, '503-500', 'abc', 600], (i, m) => problems.push([i, m]));
  assert.deepEqual(
    problems.map(([i]) => i),
    [1, 2, 3, 4],
  );
  assert.match(problems[1][1], /is empty \(low > high\)/);
});

test('config: terminal problems name the key path; the table is built at load time', () => {
  const yaml = (terminal: string) => `
pools: { p: { targets: [http://127.0.0.1:1] } }
routes:
  - match: {}
    proxy: { pool: p, strategy: failover, terminal: ${terminal} }
`;
  const ok = loadConfigText(yaml('[100, 200, 300]'), 't.yaml');
  const action = ok.compiled.routes[0].action;
  assert.equal(action.kind, 'proxy');
  if (action.kind !== 'proxy') return;
  assert.equal(action.strategy.verdicts.accepts(404), false);
  assert.equal(action.strategy.verdicts.accepts(302), true);
  assert.equal(action.strategy.order, 'listed');
  assert.equal(action.targetHeader, true);
  assert.throws(
    () => loadConfigText(yaml('[200, "503-500"]'), 't.yaml'),
    (err: Error) =>
      /routes\[0\]\.proxy\.terminal\[1\]: range "503-500" is empty \(low > high\)/.test(err.message),
  );
  assert.throws(
    () => loadConfigText(yaml('[700]'), 't.yaml'),
    (err: Error) => /routes\[0\]\.proxy\.terminal\[0\]/.test(err.message),
  );
});

test('config: width only on fanout, hedge_after takes durations and percentiles', () => {
  const route = (proxy: string) => `
pools: { p: { targets: [http://127.0.0.1:1] } }
routes: [{ match: {}, proxy: { pool: p, ${proxy} } }]
`;
  assert.throws(
    () => loadConfigText(route('strategy: failover, width: 2'), 't.yaml'),
    /proxy\.width: only applies to strategy: fanout/,
  );
  const p95 = loadConfigText(route('strategy: hedge'), 't.yaml').compiled.routes[0].action;
  const fixed = loadConfigText(route('strategy: hedge, hedge_after: 50ms'), 't.yaml').compiled.routes[0]
    .action;
  assert.ok(p95.kind === 'proxy' && fixed.kind === 'proxy');
  assert.deepEqual(p95.strategy.hedgeAfter, { kind: 'percentile', q: 95 });
  assert.deepEqual(fixed.strategy.hedgeAfter, { kind: 'fixed', ms: 50 });
  assert.equal(fixed.strategy.maxReplayBytes, 1024 * 1024);
  assert.throws(() => loadConfigText(route('strategy: hedge, hedge_after: fast'), 't.yaml'), /hedge_after/);
});

test('one status-list parser: expect and success read every code exactly, terminal a multiple of 100 as its class', () => {
  assert.deepEqual(statusRange(200, 'exact'), [200, 200]);
  assert.deepEqual(statusRange(200, 'class'), [200, 299]);
  assert.deepEqual(statusRange('2xx', 'exact'), [200, 299]);
  const { compiled } = loadConfigText(
    `
pools: { p: { targets: [http://127.0.0.1:1], health: { expect: [200, 300-302, 4xx] } } }
routes:
  - { match: { path: /d }, defer: { pool: p, success: [200] } }
  - { match: {}, proxy: { pool: p, terminal: [200] } }
`,
    't.yaml',
    { env: {} },
  );
  assert.deepEqual(compiled.pools[0].health?.expect, [
    [200, 200],
    [300, 302],
    [400, 499],
  ]);
  const [d, p] = compiled.routes.map((r) => r.action);
  assert.ok(d.kind === 'defer' && p.kind === 'proxy');
  assert.deepEqual([d.spec.success[200], d.spec.success[201]], [1, 0]);
  assert.deepEqual([p.strategy.verdicts.accepts(200), p.strategy.verdicts.accepts(201)], [true, true]);
  assert.throws(
    () => loadConfigText('pools: { p: { targets: [http://127.0.0.1:1], health: { expect: [302-300] } } }\n', 't.yaml'),
    /pools\.p\.health\.expect\[0\]: range "302-300" is empty \(low > high\)/,
  );
});
