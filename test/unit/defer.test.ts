/** Issue 6: the defer config (schema + compile) and the rate limiter, without sockets. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfigText } from '../../src/config/load.ts';
import { configProblems } from '../helpers/index.ts';
import { Janitor } from '../../src/defer/janitor.ts';
import { RateLimiter } from '../../src/defer/rate.ts';
import { SqliteQueue } from '../../src/defer/sqlite-queue.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { parseRate } from '../../src/defer/spec.ts';
import { statusTable } from '../../src/lib/statuses.ts';

const problems = (yaml: string): string[] => configProblems(yaml).map((p) => `${p.path}: ${p.message}`);

const base = (defer: string, extra = '') => `
pools: { hooks: { targets: [http://127.0.0.1:9] } }
routes:
  - { id: h, match: { path: /hooks/* }, defer: ${defer}${extra} }
`;

describe('defer config', () => {
  test('defaults', () => {
    const { config, compiled } = loadConfigText(base('{ pool: hooks }'), 'test.yaml', { env: {} });
    assert.deepEqual(config.queue, {
      driver: 'sqlite',
      path: './data/queue.db',
      url: null,
      schema: 'manifold',
      pool_size: 10,
      busy_timeout: '5s',
      commit_timeout: '5s',
      max_waiting: 10000,
      retention: '24h',
      janitor_interval: '1m',
      instance: null,
    });
    const action = compiled.routes[0].action;
    assert.equal(action.kind, 'defer');
    if (action.kind !== 'defer') return;
    const { success, ...spec } = action.spec;
    assert.deepEqual(spec, {
      pool: 'hooks',
      status: 202,
      body: 'id',
      host: 'preserve',
      maxAttempts: 10,
      ratePerSecond: null,
      concurrency: 32,
      backoff: { baseMs: 1000, maxMs: 300_000, jitter: 'full' },
      leaseMs: 30_000,
      maxBodyBytes: 1024 * 1024,
      overflowPerSecond: null,
      overflowBurst: null,
    });
    assert.equal(success[200], 1);
    assert.equal(success[299], 1);
    assert.equal(success[300], 0);
  });

  test('every problem names its key', () => {
    assert.deepEqual(problems(base('{ pool: nope }')), [
      'routes[0].defer.pool: unknown pool "nope" (pools: hooks)',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, rate: fast }')), [
      'routes[0].defer.rate: must be a rate such as 100/s, 20/m or 1000/h',
    ]);
    // Issue 13: any 2xx-5xx (asyncproxy's response_status), never 1xx or beyond 599.
    assert.deepEqual(problems(base('{ pool: hooks, status: 500, body: empty }')), []);
    assert.deepEqual(problems(base('{ pool: hooks, status: 600 }')), [
      'routes[0].defer.status: must be <= 599',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, status: 101 }')), [
      'routes[0].defer.status: must be >= 200',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, body: none }')), [
      'routes[0].defer.body: must be one of id, empty',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, overflow: { rate: lots } }')), [
      'routes[0].defer.overflow.rate: must be a rate such as 100/s, 20/m or 1000/h, or unlimited',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, overflow: { rate: 10/s, burst: 0 } }')), [
      'routes[0].defer.overflow.burst: must be >= 1',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, backoff: { base: 2s, max: 1s } }')), [
      'routes[0].defer.backoff.max: must be at least backoff.base',
    ]);
    // Issue 16 item 6: renewed leases need not outlast the route timeout (60s by default).
    assert.deepEqual(problems(base('{ pool: hooks, lease: 2s }')), []);
    assert.deepEqual(problems(base('{ pool: hooks, lease: 500ms }')), ['routes[0].defer.lease: must be at least 1s']);
    assert.deepEqual(problems(base('{ pool: hooks }') + '\nqueue: { instance: "" }'), [
      'queue.instance: must be a name of 1 to 200 characters, or null',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, success: [300-200] }')), [
      'routes[0].defer.success[0]: range "300-200" is empty (low > high)',
    ]);
    assert.deepEqual(problems(base('{ pool: hooks, overflow: {} }')), [
      'routes[0].defer.overflow.rate: is required',
    ]);
    assert.deepEqual(problems(`${base('{ pool: hooks }')}queue: { driver: postgres }\n`), [
      'queue.url: is required with driver postgres',
    ]);
    assert.deepEqual(problems(`${base('{ pool: hooks }')}queue: { url: mysql://x }\n`), [
      'queue.url: must be a postgres:// URL or a libpq key=value string',
    ]);
    assert.match(problems(`${base('{ pool: hooks }', ', proxy: { pool: hooks }')}`)[0], /several actions/);
  });

  test('rates and status lists', () => {
    assert.equal(parseRate('100/s'), 100);
    assert.equal(parseRate('30/m'), 0.5);
    assert.equal(parseRate('3600/h'), 1);
    assert.throws(() => parseRate('fast'));
    const t = statusTable([204, '4xx', '500-502'], 'exact');
    assert.deepEqual(
      [200, 204, 399, 400, 499, 500, 502, 503].map((s) => t[s]),
      [0, 1, 0, 1, 1, 1, 1, 0],
    );
  });
});

describe('RateLimiter', () => {
  test('a burst, then one token per 1/rate', () => {
    let now = 0;
    const limiter = new RateLimiter(100, 10, () => now); // 100/s: one per 10 ms, bursts of 10
    assert.equal(limiter.available(), 10);
    limiter.take(10);
    assert.equal(limiter.tryTake(), false);
    assert.equal(limiter.waitMs(), 10);
    now += 25;
    assert.equal(limiter.available(), 2);
    assert.equal(limiter.tryTake(), true);
    assert.equal(limiter.tryTake(), true);
    assert.equal(limiter.tryTake(), false);
    now += 10_000;
    assert.equal(limiter.available(), 10, 'never more than the burst');
  });

  test('the default burst is a tenth of a second, at least one', () => {
    assert.equal(new RateLimiter(100).burst, 10);
    assert.equal(new RateLimiter(2).burst, 1);
    assert.throws(() => new RateLimiter(0), RangeError);
  });
});

describe('Janitor', () => {
  test('purges delivered jobs older than the retention, in batches, and nothing else', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'manifold-janitor-'));
    let now = 1_700_000_000_000;
    const queue = new SqliteQueue({ path: join(dir, 'q.db'), now: () => now });
    t.after(async () => {
      await queue.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const job = { route: 'r', method: 'POST', url: '/', headers: [], body: Buffer.alloc(0), maxAttempts: 1 };
    await Promise.all(Array.from({ length: 1500 }, () => queue.enqueue(job)));
    const kept = (await queue.enqueue(job)).id;
    const claimed = await queue.claim('r', 1000, 60_000);
    claimed.push(...(await queue.claim('r', 1000, 60_000)));
    await Promise.all(claimed.filter((j) => j.id !== kept).map((j) => queue.complete(j.id)));
    await queue.fail(kept, 'gone', null); // a dead letter
    const janitor = new Janitor({
      queue,
      log: createLogger('silent'),
      retentionMs: 60_000,
      intervalMs: 60_000,
      now: () => now,
    });
    assert.equal(await janitor.purge(), 0, 'nothing is old enough yet');
    now += 60_001;
    assert.equal(await janitor.purge(), 1500);
    assert.deepEqual((await queue.depth('r'))[0], { route: 'r', pending: 0, inflight: 0, done: 0, dead: 1 });
    await janitor.close();
  });
});
