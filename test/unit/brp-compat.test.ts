/** Issue 13 item 1: the pieces of balancing-reverse-proxy's grammar and log format, one by one. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BRP_BASE, BRP_SOURCE, looksLikeBrp, parseBrp } from '../../src/compat/balancing-reverse-proxy.ts';
import { parseGoDuration } from '../../src/lib/go.ts';
import { loadConfigText } from '../../src/config/load.ts';
import { goDuration, textHeader, textLines } from '../../src/server/text-log.ts';

test("Go's Duration.String()", () => {
  const cases: Array<[number, string]> = [
    [0, '0s'],
    [1, '1ns'],
    [999, '999ns'],
    [807_125, '807.125µs'],
    [983_247_916, '983.247916ms'],
    [1_000_000, '1ms'],
    [5e9, '5s'],
    [1.5e9, '1.5s'],
    [90e9, '1m30s'],
    [120e9, '2m0s'],
    [3600e9, '1h0m0s'],
    [3723.5e9, '1h2m3.5s'],
    [-5e9, '-5s'],
  ];
  for (const [ns, text] of cases) assert.equal(goDuration(ns), text, `${ns} ns`);
});

test("Go's time.ParseDuration", () => {
  const cases: Array<[string, number | null]> = [
    ['5s', 5e9],
    ['0', 0],
    ['1m30s', 90e9],
    ['1.5h', 5400e9],
    ['300ms', 300e6],
    ['10us', 10e3],
    ['10µs', 10e3],
    ['-2s', -2e9],
    ['+2s', 2e9],
    ['.5s', 0.5e9],
    ['5', null],
    ['', null],
    ['s', null],
    ['5d', null],
    ['1.s', 1e9],
  ];
  for (const [text, ns] of cases) assert.equal(parseGoDuration(text), ns, text);
});

test("which argv is the seed's and which Manifold's", () => {
  const seed = [
    ['-endpoints', 'a'],
    ['-e=a'],
    ['--end', 'a'],
    ['-f', '-e', 'a', '-s', '5s'],
    ['---endpoints=a'],
    ['--endpoints', 'a', '--stop-after', '5s'],
    ['-e', 'a', '-log-file', 'x'],
    ['-e', 'a', '-nope'],
    ['-fanout'],
    ['-help'],
    ['-l'],
  ];
  const manifold = [
    [],
    ['--endpoints', 'a', '--fanout', '-t', '200'],
    ['-e', 'a', '-f', '-p8080'],
    ['-e', 'a', '--log-file', 'x', '-w0'],
    ['--config', 'x.yaml', 'validate'],
    ['--nope'],
    ['-h'],
    ['-v'],
    ['--', '-endpoints'],
  ];
  for (const argv of seed) assert.equal(looksLikeBrp(argv), true, argv.join(' '));
  for (const argv of manifold) assert.equal(looksLikeBrp(argv), false, argv.join(' '));
});

test('flagnames: prefixes, values, booleans followed by true/false', () => {
  const r = parseBrp(['-e', 'http://a,http://b', '-fa', 'false', '-log-p=x', '-s', '1m', '-t=200,300', '--addr', '[::1]:9']);
  assert.ok(!('error' in r));
  const byPath = Object.fromEntries(r.overrides.map((o) => [o.path.join('.'), o.value]));
  assert.deepEqual(byPath['pools.endpoints.targets'], ['http://a', 'http://b']);
  const route = (byPath.routes as Array<{ proxy: Record<string, unknown> }>)[0]!.proxy;
  assert.equal(route.strategy, 'failover', '-fanout false');
  assert.equal(route.retry_non_idempotent, true);
  assert.deepEqual(route.exhausted, { status: 500, body: '' });
  assert.equal(byPath['log.text.prefix'], 'x');
  assert.equal(byPath['log.format'], 'text');
  assert.equal(byPath['shutdown.after'], 60_000);
  assert.deepEqual(byPath['routes.0.proxy.terminal'], [200, 300]);
  assert.equal(byPath['listen.host'], '::1');
  assert.equal(byPath['listen.port'], 9);
  assert.equal(r.stopLine, 'stopping balancing-reverse-proxy after 1m0s');
  assert.deepEqual(r.startLines, ['configuring endpoint 0: "http://a"', 'configuring endpoint 1: "http://b"', 'starting on: "[::1]:9"']);
  // A boolean does not take a value that is not true/false: "x" is then a positional.
  const positional = parseBrp(['-e', 'http://a', '-f', 'x']);
  assert.ok('error' in positional);
  // A value-taking flag takes the next argument even when it starts with a dash (Go flag).
  const dashValue = parseBrp(['-e', 'http://a', '-s', '-5s']);
  assert.ok(!('error' in dashValue));
  assert.equal(dashValue.stopLine, null, 'a negative -stop-after never stops');
  // Go's ParseBool words only: an Object.prototype name is no boolean (it once read as true).
  for (const word of ['toString', 'constructor', '__proto__']) {
    const r = parseBrp(['-e', 'http://a', `-fanout=${word}`]);
    assert.ok('error' in r, word);
  }
});

test("Go log's header", () => {
  const at = Date.UTC(2026, 0, 2, 3, 4, 5) + 678.5; // 03:04:05.678500 UTC (exact in binary)
  const opts = { prefix: 'p', date: true, time: true, microseconds: true, utc: true };
  assert.equal(textHeader(at, opts), 'p 2026/01/02 03:04:05.678500 ');
  assert.equal(textHeader(at, { ...opts, microseconds: false }), 'p 2026/01/02 03:04:05 ');
  assert.equal(textHeader(at, { ...opts, time: false, microseconds: false }), 'p 2026/01/02 ');
  assert.equal(textHeader(at, { ...opts, date: false, time: false }), 'p 03:04:05.678500 ', 'microseconds imply the time');
  assert.equal(textHeader(at, { ...opts, prefix: '', date: false, time: false, microseconds: false }), '');
});

test('text lines: the request sentence, the exhausted line, key=value for the rest', () => {
  assert.deepEqual(textLines({ msg: 'request', url: '/a?b=1', duration_ms: 983.248, route: 'r', target: 't' }, null), [
    'request /a?b=1 served in 983.248ms by endpoint -1',
  ]);
  assert.deepEqual(textLines({ msg: 'request', url: '/', duration_ms: 1.5, status: 500, error: 'NO_ACCEPTED_ANSWER' }, null), [
    'endpoints failed to return a valid answer, returning 500',
    'request / served in 1.5ms by endpoint -1',
  ]);
  assert.deepEqual(textLines({ level: 'info', time: 'x', pid: 1, msg: 'manifold listening', port: 8080, list: [1] }, null), [
    'manifold listening port=8080 list=[1]',
  ]);
});

test("the seed README's repeated endpoint is a target of its own, and the config is valid", () => {
  const url = 'http://localhost:8000';
  const r = parseBrp(['-fanout', '--endpoints', [url, url, url, 'http://localhost:8000/'].join(',')]);
  assert.ok(!('error' in r));
  const loaded = loadConfigText(BRP_BASE, BRP_SOURCE, { overrides: r.overrides, env: {} });
  const pool = loaded.compiled.pools.find((p) => p.name === 'endpoints')!;
  assert.deepEqual(
    pool.targets.map((t) => t.id),
    ['localhost:8000', 'endpoint-1', 'endpoint-2', 'endpoint-3'],
  );
  assert.equal(loaded.config.workers, 0);
  assert.equal(loaded.config.log.format, 'json', 'no -log-* flag: JSON');
  assert.equal(loaded.config.log.text.prefix, 'balancing-reverse-proxy');
});
