/** Issue 13: the libpq parser behind queue.url / db.connection_string, and asyncproxy's value forms. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { goDurationMs, isAsyncproxyConfig, parseBind } from '../../src/compat/asyncproxy.ts';
import { parseLibpq, postgresUrl } from '../../src/defer/pg-conn.ts';
import { loadConfigText } from '../../src/config/load.ts';

test("libpq key=value: quoting, escapes, spaces around =", () => {
  assert.deepEqual(parseLibpq(`host=db  port = 5433 user='a b\\'c' dbname=x\\ y`), [
    ["host", "db"],
    ["port", "5433"],
    ["user", "a b'c"],
    ["dbname", "x y"],
  ]);
  assert.throws(() => parseLibpq("host"), /expected key=value/);
  assert.throws(() => parseLibpq("password='open"), /unterminated quoted value of password/);
});

test('libpq → postgres:// URL; lib/pq-only keys ignored, unknown keys refused by name', () => {
  assert.equal(
    postgresUrl('host=localhost port=5432 user=postgres password=p@ss dbname=asyncproxy sslmode=disable binary_parameters=yes'),
    'postgres://postgres:p%40ss@localhost:5432/asyncproxy?sslmode=disable',
  );
  assert.equal(postgresUrl('host=/var/run/postgresql dbname=q'), 'postgres:///q?host=%2Fvar%2Frun%2Fpostgresql');
  assert.equal(postgresUrl('postgres://u@h/db'), 'postgres://u@h/db');
  assert.throws(() => postgresUrl('host=h target_session_attrs=any'), /unknown connection key "target_session_attrs"/);
  assert.throws(() => postgresUrl('host=h port=abc'), /port must be a number/);
});

test("queue.url: a bad libpq string is a config error naming queue.url", () => {
  assert.throws(
    () => loadConfigText('queue: { driver: postgres, url: "host=h nope=1" }\n', 'c.yaml', { env: {} }),
    /c\.yaml:1: queue\.url: unknown connection key "nope"/,
  );
  const ok = loadConfigText('queue: { driver: postgres, url: "host=h dbname=d" }\n', 'c.yaml', { env: {} });
  assert.equal(ok.config.queue.url, 'host=h dbname=d');
});

test("asyncproxy's Go durations and listen addresses", () => {
  assert.equal(goDurationMs('30s'), 30_000);
  assert.equal(goDurationMs('1m30s'), 90_000);
  assert.equal(goDurationMs('1.5h'), 5_400_000);
  assert.equal(goDurationMs('250ms'), 250);
  assert.equal(goDurationMs('0'), 0);
  assert.throws(() => goDurationMs('30'), /not a duration/);
  assert.throws(() => goDurationMs('30s '), /not a duration/);
  assert.deepEqual(parseBind(':8080'), { host: '0.0.0.0', port: 8080 });
  assert.deepEqual(parseBind('127.0.0.1:9'), { host: '127.0.0.1', port: 9 });
  assert.deepEqual(parseBind('[::1]:80'), { host: '::1', port: 80 });
  assert.throws(() => parseBind('8080'), /not an address/);
});

test('an asyncproxy file is told from a Manifold one by its keys', () => {
  assert.equal(isAsyncproxyConfig({ server: { bind: ':8080' }, proxy: {} }), true);
  assert.equal(isAsyncproxyConfig({ queue: { workers: 3 } }), true);
  assert.equal(isAsyncproxyConfig({ queue: { driver: 'sqlite' }, metrics: {} }), false);
  assert.equal(isAsyncproxyConfig({ redis: {}, proxy: {} }), true);
  assert.equal(isAsyncproxyConfig({ listen: { port: 1 }, routes: [] }), false);
  assert.equal(isAsyncproxyConfig({ listen: { port: 1 }, server: {} }), false, 'Manifold file with a stray key');
  assert.equal(isAsyncproxyConfig(null), false);
});
