/** Pure pieces of the core: units, path joining, host parsing, matchers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration, parseSize } from '../../src/lib/units.ts';
import { joinPath } from '../../src/proxy/headers.ts';
import { pathMatcher, hostMatcher } from '../../src/routing/matcher.ts';
import { hostOf } from '../../src/routing/matcher.ts';
import { requestPath } from '../../src/server/pipeline.ts';

test('durations and sizes', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('2m'), 120_000);
  assert.equal(parseDuration(40), 40);
  assert.throws(() => parseDuration('5 seconds'), /not a duration/);
  assert.equal(parseSize('16KiB'), 16384);
  assert.equal(parseSize('10MB'), 10_000_000);
  assert.equal(parseSize('2kB'), 2000);
  assert.equal(parseSize(7), 7);
  assert.throws(() => parseSize('lots'), /not a size/);
});

test('joinPath joins prefixes at segment boundaries and keeps the query', () => {
  assert.equal(joinPath('', '/a?b=1', null), '/a?b=1');
  assert.equal(joinPath('/v2', '/a?b=1', null), '/v2/a?b=1');
  assert.equal(joinPath('/v2', '/api/a', '/api'), '/v2/a');
  assert.equal(joinPath('', '/api', '/api'), '/');
  assert.equal(joinPath('', '/api?x', '/api'), '/?x');
  assert.equal(joinPath('', '/apix/a', '/api'), '/apix/a', 'not a segment boundary');
});

test('hostOf strips ports, keeps IPv6 brackets, lower-cases', () => {
  assert.equal(hostOf('Example.COM:8080'), 'example.com');
  assert.equal(hostOf('[::1]:80'), '[::1]');
  assert.equal(hostOf(undefined), '');
});

test('requestPath refuses non-origin-form and dot segments', () => {
  assert.equal(requestPath('/a/b?c'), '/a/b');
  assert.throws(() => requestPath('http://x/a'), /origin-form/);
  assert.throws(() => requestPath('/a/../b'), /dot segments/);
  assert.throws(() => requestPath('/a/%2E%2e/b'), /dot segments/);
  assert.equal(requestPath('/a/..b/c'), '/a/..b/c', 'only whole segments count');
});

test('path and host matchers', () => {
  const prefix = pathMatcher('/v1/*');
  assert.ok(prefix('/v1') && prefix('/v1/') && prefix('/v1/a/b'));
  assert.ok(!prefix('/v10') && !prefix('/v'));
  const all = pathMatcher('/*');
  assert.ok(all('/') && all('/anything'));
  const params = pathMatcher('/u/:id/*');
  assert.ok(params('/u/1') && params('/u/1/x/y'));
  assert.ok(!params('/u') && !params('/u/'));
  const host = hostMatcher(['api.test', '*.example.com']);
  assert.ok(host('api.test') && host('a.example.com') && host('a.b.example.com'));
  assert.ok(!host('example.com') && !host('xexample.com'));
  // `*` alone is any host (as in tcp `sni` and `connect.allow`), not a name nobody has.
  const any = hostMatcher(['*']);
  assert.ok(any('api.test') && any('10.0.0.1') && any(''));
});
