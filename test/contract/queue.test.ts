/**
 * One contract for every `Queue` store (hono `runTest({ newRouter })` style): the same cases run
 * against SqliteQueue (a real file in a temp dir) and PgQueue (the local PostgreSQL, a fresh
 * schema per test). Time-dependent cases move an injected clock instead of sleeping.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { isGatewayError } from '../../src/errors.ts';
import { PgQueue } from '../../src/defer/pg-queue.ts';
import {
  type JobInput,
  LAST_ERROR_MAX,
  newJobId,
  type Queue,
  QueueOptionError,
} from '../../src/defer/queue.ts';
import { SqliteQueue } from '../../src/defer/sqlite-queue.ts';
import { jobMigrations } from '../../src/defer/queue-core.ts';
import { dropSchema, newSchemaName, PG_URL, pgQuery } from '../helpers/pg.ts';

interface StoreOptions {
  now?: () => number;
  instance?: string;
  maxWaiting?: number;
  maxBatch?: number;
}

interface Store {
  queue: Queue;
  /** Another instance on the same storage (its own connection or pool), closed after the test. */
  reopen(options?: StoreOptions): Promise<Queue>;
  /** Make every write of the store fail until the returned function runs. */
  breakWrites(): Promise<() => Promise<void>>;
}

type NewStore = (t: TestContext, options?: StoreOptions) => Promise<Store>;

const T0 = 1_700_000_000_000;

function fakeClock() {
  let now = T0;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

function job(overrides: Partial<JobInput> = {}): JobInput {
  return {
    route: 'r1',
    method: 'POST',
    url: '/hooks/a?x=1',
    headers: [],
    body: Buffer.from('{}'),
    maxAttempts: 3,
    ...overrides,
  };
}

function isUnavailable(err: unknown): boolean {
  return isGatewayError(err) && err.code === 'QUEUE_UNAVAILABLE' && err.status === 503;
}

/** Poll `fn` until it returns a truthy value (instead of sleeping for a guessed time). */
async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/**
 * Claim until the route is empty, with `loops` concurrent loops per queue; returns every claimed
 * id. `workMs` stands for a delivery between claims (it shapes the load; nothing is timed).
 */
async function drainConcurrently(
  queues: Queue[],
  loops: number,
  limit: number,
  workMs = 0,
): Promise<string[]> {
  const claimed: string[] = [];
  const loop = async (queue: Queue) => {
    for (;;) {
      const jobs = await queue.claim('r1', limit, 60_000);
      if (jobs.length === 0) return;
      for (const j of jobs) claimed.push(j.id);
      if (workMs > 0) await delay(workMs);
    }
  };
  await Promise.all(queues.flatMap((queue) => Array.from({ length: loops }, () => loop(queue))));
  return claimed;
}

function runQueueContract(name: string, newStore: NewStore): void {
  describe(`Queue contract: ${name}`, () => {
    it('stores a job as given and returns it from get()', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const body = Buffer.from([0, 1, 2, 255, 0x5c, 0x78]); // binary, with a `\x` in it
      const headers: Array<[string, string]> = [
        ['content-type', 'application/json'],
        ['x-dup', 'one'],
        ['x-dup', 'two'],
      ];
      const { id, duplicate } = await queue.enqueue(
        job({ headers, body, idempotencyKey: 'k1', maxAttempts: 5 }),
      );
      assert.equal(duplicate, false);
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.deepEqual(await queue.get(id), {
        id,
        route: 'r1',
        method: 'POST',
        url: '/hooks/a?x=1',
        headers,
        body,
        idempotencyKey: 'k1',
        attempts: 0,
        maxAttempts: 5,
        state: 'pending',
        runAt: T0,
        leaseUntil: null,
        lastError: null,
        claimedBy: null,
        createdAt: T0,
        updatedAt: T0,
      });
      const empty = await queue.enqueue(job({ body: Buffer.alloc(0) }));
      assert.equal((await queue.get(empty.id))?.body.length, 0);
      assert.equal(await queue.get('no-such-id'), null);
    });

    it('ids sort in creation order', async (t) => {
      const { queue } = await newStore(t);
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push((await queue.enqueue(job())).id);
      assert.deepEqual([...ids].sort(), ids);
      assert.equal(new Set(ids).size, ids.length);
    });

    it('rejects invalid input with a TypeError naming the field', async (t) => {
      const { queue } = await newStore(t);
      await assert.rejects(queue.enqueue(job({ route: '' })), { name: 'TypeError', message: /job\.route/ });
      await assert.rejects(queue.enqueue(job({ maxAttempts: 0 })), /job\.maxAttempts/);
      await assert.rejects(queue.enqueue(job({ headers: [['a']] as never })), /job\.headers/);
      await assert.rejects(queue.claim('r1', 0, 1000), RangeError);
      await assert.rejects(queue.list({ limit: 0 }), RangeError);
    });

    it('claim leases eligible jobs of one route and counts an attempt; complete marks done', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const a = [];
      for (let i = 0; i < 3; i++) a.push((await queue.enqueue(job())).id);
      const b = (await queue.enqueue(job({ route: 'r2' }))).id;

      const first = await queue.claim('r1', 2, 1000);
      assert.deepEqual(
        first.map((j) => j.id),
        a.slice(0, 2),
      );
      for (const j of first) {
        assert.equal(j.state, 'inflight');
        assert.equal(j.attempts, 1);
        assert.equal(j.leaseUntil, T0 + 1000);
      }
      assert.deepEqual(
        (await queue.claim('r1', 10, 1000)).map((j) => j.id),
        [a[2]],
      );
      assert.deepEqual(await queue.claim('r1', 10, 1000), []);

      assert.equal(await queue.complete(a[0]), true);
      const done = await queue.get(a[0]);
      assert.equal(done?.state, 'done');
      assert.equal(done?.leaseUntil, null);
      assert.equal(await queue.complete(a[0]), false, 'completing twice');
      assert.equal(await queue.complete(b), false, 'completing a pending job');

      clock.advance(5000); // expired leases must not bring a done job back
      assert.deepEqual((await queue.claim('r1', 10, 1000)).map((j) => j.id).sort(), [a[1], a[2]].sort());
      assert.deepEqual(
        (await queue.claim('r2', 10, 1000)).map((j) => j.id),
        [b],
      );
    });

    it('does not claim a job before its runAt', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const { id } = await queue.enqueue(job({ runAt: T0 + 1000 }));
      assert.deepEqual(await queue.claim('r1', 10, 1000), []);
      clock.advance(999);
      assert.deepEqual(await queue.claim('r1', 10, 1000), []);
      clock.advance(1);
      assert.deepEqual(
        (await queue.claim('r1', 10, 1000)).map((j) => j.id),
        [id],
      );
    });

    it('fail with retryAt puts the job back to pending, claimable only from retryAt', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const { id } = await queue.enqueue(job());
      await queue.claim('r1', 1, 1000);
      assert.equal(await queue.fail(id, 'target said 503', T0 + 500), 'pending');
      const failed = await queue.get(id);
      assert.equal(failed?.state, 'pending');
      assert.equal(failed?.runAt, T0 + 500);
      assert.equal(failed?.leaseUntil, null);
      assert.equal(failed?.lastError, 'target said 503');
      assert.equal(failed?.attempts, 1);

      assert.deepEqual(await queue.claim('r1', 1, 1000), []);
      clock.advance(500);
      const [again] = await queue.claim('r1', 1, 1000);
      assert.equal(again.id, id);
      assert.equal(again.attempts, 2);
      assert.equal(await queue.fail('no-such-id', 'x', T0), null);
      assert.equal(await queue.fail(id, 'x', T0), 'pending');
      assert.equal(await queue.fail(id, 'x', T0), null, 'a pending job cannot fail');
    });

    it('fail on the last attempt, or with retryAt null, dead-letters the job with lastError', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const { id } = await queue.enqueue(job({ maxAttempts: 2 }));
      await queue.claim('r1', 1, 1000);
      assert.equal(await queue.fail(id, 'first', T0), 'pending');
      await queue.claim('r1', 1, 1000);
      assert.equal(await queue.fail(id, 'second', T0), 'dead');
      const dead = await queue.get(id);
      assert.equal(dead?.state, 'dead');
      assert.equal(dead?.attempts, 2);
      assert.equal(dead?.lastError, 'second');
      clock.advance(10_000);
      assert.deepEqual(await queue.claim('r1', 10, 1000), [], 'dead letters are not claimed');

      const permanent = await queue.enqueue(job({ maxAttempts: 10 }));
      await queue.claim('r1', 1, 1000);
      assert.equal(await queue.fail(permanent.id, 'x'.repeat(LAST_ERROR_MAX + 100), null), 'dead');
      assert.equal((await queue.get(permanent.id))?.lastError?.length, LAST_ERROR_MAX);
    });

    it('retryDead and retryAllDead bring dead letters back with attempts reset', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const kill = async (route: string) => {
        const { id } = await queue.enqueue(job({ route, maxAttempts: 1 }));
        await queue.claim(route, 1, 1000);
        assert.equal(await queue.fail(id, 'boom', T0), 'dead');
        return id;
      };
      const a1 = await kill('a');
      const a2 = await kill('a');
      const a3 = await kill('a');
      const b1 = await kill('b');
      const pending = (await queue.enqueue(job({ route: 'a' }))).id;
      clock.advance(100);

      assert.equal(await queue.retryDead(a1), true);
      const retried = await queue.get(a1);
      assert.equal(retried?.state, 'pending');
      assert.equal(retried?.attempts, 0);
      assert.equal(retried?.runAt, T0 + 100);
      assert.equal(retried?.lastError, 'boom', 'kept for history');
      assert.equal(await queue.retryDead(a1), false, 'no longer dead');
      assert.equal(await queue.retryDead(pending), false);

      assert.equal(await queue.retryAllDead('a'), 2);
      assert.equal((await queue.get(b1))?.state, 'dead', 'other routes untouched');
      assert.equal(await queue.retryAllDead(), 1);
      assert.equal(await queue.retryAllDead(), 0);

      const claimed = await queue.claim('a', 10, 1000);
      assert.deepEqual(claimed.map((j) => j.id).sort(), [a1, a2, a3, pending].sort());
      assert.ok(claimed.every((j) => j.attempts === 1));
    });

    it('delete removes a job in any state', async (t) => {
      const { queue } = await newStore(t);
      const pending = (await queue.enqueue(job())).id;
      const inflight = (await queue.enqueue(job())).id;
      await queue.claim('r1', 1, 1000);
      assert.equal(await queue.delete(pending), true);
      assert.equal(await queue.delete(inflight), true);
      assert.equal(await queue.get(pending), null);
      assert.equal(await queue.delete(pending), false);
      assert.equal(await queue.complete(inflight), false, 'completing a deleted job');
    });

    it('purge removes done jobs older than a time, at most limit, and nothing else (issue 6)', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const ids = [];
      for (let i = 0; i < 4; i++) ids.push((await queue.enqueue(job({ idempotencyKey: `k${i}` }))).id);
      const pending = (await queue.enqueue(job())).id;
      const claimed = await queue.claim('r1', 4, 1000);
      assert.equal(claimed.length, 4);
      await Promise.all(ids.slice(0, 3).map((id) => queue.complete(id)));
      await queue.fail(ids[3], 'boom', null); // a dead letter: never purged
      clock.advance(1000);
      assert.equal(await queue.purge(T0, 10), 0, 'updated at T0 is not before T0');
      assert.equal(await queue.purge(T0 + 1, 2), 2, 'at most limit');
      assert.equal(await queue.purge(T0 + 1, 2), 1);
      assert.equal(await queue.purge(T0 + 1, 2), 0);
      const left = (await queue.list({ limit: 10 })).map((j) => [j.id, j.state]);
      assert.deepEqual(left, [
        [ids[3], 'dead'],
        [pending, 'pending'],
      ]);
      // A purged job forgets its idempotency key.
      assert.equal((await queue.enqueue(job({ idempotencyKey: 'k0' }))).duplicate, false);
      await assert.rejects(queue.purge(T0, 0), RangeError);
    });

    it('concurrent completes share commits and each resolves with its own result (issue 6)', async (t) => {
      const { queue } = await newStore(t);
      for (let i = 0; i < 20; i++) await queue.enqueue(job());
      const jobs = await queue.claim('r1', 20, 60_000);
      const before = queue.stats().commits;
      const results = await Promise.all([
        ...jobs.map((j) => queue.complete(j.id)),
        queue.complete(jobs[0].id),
      ]);
      assert.deepEqual(results.slice(0, 20), Array(20).fill(true));
      assert.ok(queue.stats().commits - before < 20, 'fewer commits than completions');
      assert.equal((await queue.depth('r1'))[0].done, 20);
    });

    it('keeps a pre-assigned job id (issue 6: a direct delivery queued afterwards)', async (t) => {
      const { queue } = await newStore(t);
      const id = newJobId();
      assert.deepEqual(await queue.enqueue(job({ id })), { id, duplicate: false });
      assert.equal((await queue.get(id))?.id, id);
      await assert.rejects(queue.enqueue(job({ id: 'not-an-id' })), /job\.id/);
    });

    it('an idempotency key returns the first job, per route', async (t) => {
      const { queue } = await newStore(t);
      const first = await queue.enqueue(job({ idempotencyKey: 'order-1' }));
      const again = await queue.enqueue(job({ idempotencyKey: 'order-1', body: Buffer.from('other') }));
      assert.deepEqual(again, { id: first.id, duplicate: true });
      assert.equal((await queue.get(first.id))?.body.toString(), '{}', 'the first body is kept');

      const otherRoute = await queue.enqueue(job({ route: 'r2', idempotencyKey: 'order-1' }));
      assert.equal(otherRoute.duplicate, false);
      assert.notEqual(otherRoute.id, first.id);

      // Same key several times in one batch: one job, the rest point at it.
      const burst = await Promise.all(
        Array.from({ length: 5 }, () => queue.enqueue(job({ idempotencyKey: 'b' }))),
      );
      assert.equal(new Set(burst.map((r) => r.id)).size, 1);
      assert.deepEqual(
        burst.map((r) => r.duplicate),
        [false, true, true, true, true],
      );
      assert.equal((await queue.depth('r1'))[0].pending, 2);

      // The key lives as long as the job.
      await queue.delete(first.id);
      assert.equal((await queue.enqueue(job({ idempotencyKey: 'order-1' }))).duplicate, false);
    });

    it('an expired lease makes the job claimable again, counting another attempt', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const { id } = await queue.enqueue(job());
      assert.equal((await queue.claim('r1', 1, 100))[0].attempts, 1);
      assert.deepEqual(await queue.claim('r1', 1, 100), [], 'lease still held');
      clock.advance(100);
      const [again] = await queue.claim('r1', 1, 100);
      assert.equal(again.id, id);
      assert.equal(again.attempts, 2);
      assert.equal(again.leaseUntil, T0 + 200);
    });

    it('an expired lease on the last attempt dead-letters the job', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const { id } = await queue.enqueue(job({ maxAttempts: 1 }));
      await queue.claim('r1', 1, 100);
      clock.advance(100);
      assert.deepEqual(await queue.claim('r1', 1, 100), []);
      const dead = await queue.get(id);
      assert.equal(dead?.state, 'dead');
      assert.equal(dead?.lastError, 'lease expired');
      assert.equal(dead?.attempts, 1);
    });

    it('release gives leases back without counting the attempt', async (t) => {
      const clock = fakeClock();
      const { queue } = await newStore(t, { now: clock.now });
      const a = (await queue.enqueue(job())).id;
      const b = (await queue.enqueue(job())).id;
      const c = (await queue.enqueue(job())).id;
      await queue.claim('r1', 2, 60_000);
      assert.equal(await queue.release([a, b, c, 'no-such-id']), 2, 'only inflight jobs are released');
      assert.equal(await queue.release([]), 0);
      const released = await queue.get(a);
      assert.equal(released?.state, 'pending');
      assert.equal(released?.attempts, 0);
      assert.equal(released?.leaseUntil, null);
      const claimed = await queue.claim('r1', 10, 60_000);
      assert.deepEqual(claimed.map((j) => j.id).sort(), [a, b, c].sort());
      assert.ok(claimed.every((j) => j.attempts === 1));
    });

    it('claims record the instance; renew extends only our leases, even expired ones nobody took (issue 16)', async (t) => {
      const clock = fakeClock();
      const store = await newStore(t, { now: clock.now, instance: 'gw-a' });
      const { queue } = store;
      const other = await store.reopen({ instance: 'gw-b' });
      assert.equal(queue.instance, 'gw-a');
      const a = (await queue.enqueue(job())).id;
      const b = (await queue.enqueue(job())).id;
      const pending = (await queue.enqueue(job({ runAt: T0 + 3_600_000 }))).id;
      const claimed = await queue.claim('r1', 2, 1000);
      assert.deepEqual(claimed.map((j) => j.claimedBy), ['gw-a', 'gw-a']);
      assert.equal((await queue.get(a))?.claimedBy, 'gw-a');

      clock.advance(900);
      assert.deepEqual((await queue.renew([a, b, pending, 'no-such-id'], 1000)).sort(), [a, b].sort());
      assert.equal((await queue.get(a))?.leaseUntil, T0 + 1900);
      assert.deepEqual(await other.renew([a, b], 60_000), [], "another instance cannot renew our jobs");
      assert.equal((await queue.get(a))?.leaseUntil, T0 + 1900);
      clock.advance(900);
      assert.deepEqual(await other.claim('r1', 10, 1000), [], 'renewed leases are still held at T0+1800');
      assert.deepEqual(await queue.renew([], 1000), []);
      await assert.rejects(queue.renew([a], 0), RangeError);

      // Our lease runs out: renewing before anyone takes the job keeps it ours...
      clock.advance(1000);
      assert.deepEqual(await queue.renew([a], 1000), [a], 'expired, not taken: still ours');
      // ...but once another instance claims it, it is theirs: no renew, no complete, no fail.
      clock.advance(1000);
      const taken = await other.claim('r1', 10, 1000);
      assert.deepEqual(taken.map((j) => j.id).sort(), [a, b].sort());
      assert.ok(taken.every((j) => j.claimedBy === 'gw-b' && j.attempts === 2));
      assert.deepEqual(await queue.renew([a, b], 1000), [], 'no longer ours');
      assert.equal(await queue.complete(a), false, 'the old claimer cannot complete it');
      assert.equal(await queue.fail(b, 'late', null), null, 'nor fail it');
      assert.equal((await queue.get(b))?.state, 'inflight');
      assert.equal(await other.complete(a), true, 'the new claimer can');
      assert.equal(await other.fail(b, 'boom', T0), 'pending');
    });

    it('releaseOwn frees the inflight jobs of this instance name at once, attempt not counted (issue 16)', async (t) => {
      const clock = fakeClock();
      const store = await newStore(t, { now: clock.now, instance: 'gw-a' });
      const other = await store.reopen({ instance: 'gw-b' });
      const mine = [(await store.queue.enqueue(job())).id, (await store.queue.enqueue(job({ route: 'r2' }))).id];
      const theirs = (await store.queue.enqueue(job({ route: 'r3' }))).id;
      assert.equal((await store.queue.claim('r1', 10, 60_000)).length, 1);
      assert.equal((await store.queue.claim('r2', 10, 60_000)).length, 1);
      assert.equal((await other.claim('r3', 10, 60_000)).length, 1);

      // The same name opened again: a restarted gateway (its previous life was killed).
      const next = await store.reopen({ instance: 'gw-a' });
      const woken = next.waitForWork('r1', { maxWaitMs: 10_000 });
      assert.equal(await next.releaseOwn(), 2, 'both jobs of gw-a, on every route');
      assert.equal(await woken, true, 'a release wakes the route');
      for (const id of mine) {
        const j = await next.get(id);
        assert.equal(j?.state, 'pending');
        assert.equal(j?.attempts, 0, 'the killed attempt does not count');
        assert.equal(j?.runAt !== undefined && j.runAt <= T0, true, 'eligible at once');
      }
      assert.equal((await next.get(theirs))?.state, 'inflight', "another instance's job is left alone");
      assert.equal(await next.releaseOwn(), 0, 'nothing left');
      const again = await next.claim('r1', 10, 60_000);
      assert.deepEqual(again.map((j) => [j.id, j.attempts, j.claimedBy]), [[mine[0], 1, 'gw-a']]);
    });

    it('concurrent claimers on two instances never get the same job', async (t) => {
      const store = await newStore(t);
      const other = await store.reopen();
      const ids = await Promise.all(
        Array.from({ length: 200 }, (_, i) => store.queue.enqueue(job({ url: `/${i}` }))),
      );
      const claimed = await drainConcurrently([store.queue, other], 4, 3);
      assert.equal(claimed.length, 200, 'each job claimed exactly once');
      assert.deepEqual(new Set(claimed), new Set(ids.map((r) => r.id)));
      assert.deepEqual(await store.queue.depth('r1'), [
        { route: 'r1', pending: 0, inflight: 200, done: 0, dead: 0 },
      ]);
    });

    it('group commit: concurrent enqueues share transactions', async (t) => {
      const { queue } = await newStore(t, { maxBatch: 100 });
      const before = queue.stats();
      const results = await Promise.all(
        Array.from({ length: 500 }, (_, i) => queue.enqueue(job({ url: `/${i}` }))),
      );
      const after = queue.stats();
      assert.equal(new Set(results.map((r) => r.id)).size, 500);
      assert.equal(after.enqueued - before.enqueued, 500);
      assert.equal(after.waiting, 0);
      // 500 calls in one turn, at most 100 per batch: 5 commits, not 500.
      assert.equal(after.commits - before.commits, 5);
      assert.equal((await queue.depth('r1'))[0].pending, 500);
    });

    it('refuses enqueues beyond maxWaiting instead of queueing them', async (t) => {
      const { queue } = await newStore(t, { maxWaiting: 10 });
      const settled = await Promise.allSettled(Array.from({ length: 25 }, () => queue.enqueue(job())));
      const refused = settled.filter((s) => s.status === 'rejected');
      assert.equal(settled.length - refused.length, 10);
      assert.ok(refused.every((s) => isUnavailable(s.reason) && /overloaded/.test(s.reason.message)));
      assert.equal((await queue.enqueue(job())).duplicate, false, 'accepts again once committed');
      assert.equal((await queue.depth('r1'))[0].pending, 11);
    });

    it('when a commit fails every enqueue of that batch rejects with QUEUE_UNAVAILABLE', async (t) => {
      const store = await newStore(t);
      const { queue } = store;
      const restore = await store.breakWrites();
      const settled = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => queue.enqueue(job({ url: `/${i}` }))),
      );
      assert.ok(settled.every((s) => s.status === 'rejected' && isUnavailable(s.reason) && s.reason.cause));
      assert.equal(queue.stats().waiting, 0);
      await restore();
      const { id } = await queue.enqueue(job());
      assert.deepEqual(
        (await queue.list({ limit: 100 })).map((j) => j.id),
        [id],
        'nothing of the failed batch was stored',
      );
    });

    it('close commits accepted enqueues; later calls reject with QUEUE_UNAVAILABLE', async (t) => {
      const store = await newStore(t);
      const accepted = store.queue.enqueue(job());
      await store.queue.close();
      const { id } = await accepted;
      await assert.rejects(store.queue.enqueue(job()), isUnavailable);
      await assert.rejects(store.queue.claim('r1', 1, 1000), isUnavailable);
      await assert.rejects(store.queue.get(id), isUnavailable);
      assert.equal(await store.queue.waitForWork('r1', { maxWaitMs: 10_000 }), false);
      await store.queue.close(); // idempotent
      const fresh = await store.reopen();
      assert.equal((await fresh.get(id))?.state, 'pending');
    });

    it('an acknowledged job is visible to a fresh connection (durability)', async (t) => {
      const store = await newStore(t);
      const input = job({ headers: [['x-a', '1']], body: Buffer.from('payload'), idempotencyKey: 'd' });
      const { id } = await store.queue.enqueue(input);
      const fresh = await store.reopen();
      const seen = await fresh.get(id);
      assert.equal(seen?.body.toString(), 'payload');
      assert.deepEqual(seen?.headers, [['x-a', '1']]);
      assert.deepEqual(await fresh.enqueue(input), { id, duplicate: true });
    });

    it('depth counts jobs by route and state', async (t) => {
      const { queue } = await newStore(t);
      for (let i = 0; i < 4; i++) await queue.enqueue(job({ route: 'b' }));
      for (let i = 0; i < 2; i++) await queue.enqueue(job({ route: 'a', maxAttempts: 1 }));
      const [done, dead] = await queue.claim('a', 2, 1000);
      await queue.complete(done.id);
      await queue.fail(dead.id, 'x', null);
      await queue.claim('b', 1, 1000);
      assert.deepEqual(await queue.depth(), [
        { route: 'a', pending: 0, inflight: 0, done: 1, dead: 1 },
        { route: 'b', pending: 3, inflight: 1, done: 0, dead: 0 },
      ]);
      assert.deepEqual(await queue.depth('b'), [{ route: 'b', pending: 3, inflight: 1, done: 0, dead: 0 }]);
      assert.deepEqual(await queue.depth('none'), [
        { route: 'none', pending: 0, inflight: 0, done: 0, dead: 0 },
      ]);
    });

    it('list pages through jobs in id order, filtered by route and state', async (t) => {
      const { queue } = await newStore(t);
      const ids: string[] = [];
      for (let i = 0; i < 7; i++)
        ids.push((await queue.enqueue(job({ route: i % 2 === 0 ? 'even' : 'odd' }))).id);
      const page1 = await queue.list({ limit: 3 });
      const page2 = await queue.list({ limit: 3, after: page1.at(-1)?.id });
      const page3 = await queue.list({ limit: 3, after: page2.at(-1)?.id });
      assert.deepEqual(
        [...page1, ...page2, ...page3].map((j) => j.id),
        ids,
      );
      assert.deepEqual(
        (await queue.list({ route: 'odd', limit: 10 })).map((j) => j.id),
        [ids[1], ids[3], ids[5]],
      );
      await queue.claim('even', 1, 1000);
      assert.deepEqual(
        (await queue.list({ route: 'even', state: 'inflight', limit: 10 })).map((j) => j.id),
        [ids[0]],
      );
      assert.deepEqual(
        (await queue.list({ state: 'pending', after: ids[4], limit: 10 })).map((j) => j.id),
        [ids[5], ids[6]],
      );
    });

    it('waitForWork wakes on work from this or another instance, else times out or aborts', async (t) => {
      const store = await newStore(t);
      const { queue } = store;
      const other = await store.reopen();

      await queue.claim('r1', 1, 1000);
      assert.equal(await queue.waitForWork('r1', { maxWaitMs: 20 }), false, 'timed out');
      const controller = new AbortController();
      const aborted = queue.waitForWork('r1', { maxWaitMs: 10_000, signal: controller.signal });
      controller.abort();
      assert.equal(await aborted, false, 'aborted');

      const local = queue.waitForWork('r1', { maxWaitMs: 10_000 });
      await queue.enqueue(job());
      assert.equal(await local, true, 'woken by an enqueue through this instance');

      await queue.claim('r1', 10, 60_000);
      const remote = queue.waitForWork('r1', { maxWaitMs: 10_000 });
      await other.enqueue(job());
      assert.equal(await remote, true, 'woken by an enqueue through another instance');

      // A wake-up between a claim and the wait is not lost.
      await queue.claim('r1', 10, 60_000);
      await queue.enqueue(job());
      assert.equal(await queue.waitForWork('r1', { maxWaitMs: 10_000 }), true);

      // Releases and retries wake too.
      const [held] = await queue.claim('r1', 1, 60_000);
      const onRelease = queue.waitForWork('r1', { maxWaitMs: 10_000 });
      await queue.release([held.id]);
      assert.equal(await onRelease, true);
      const [doomed] = await queue.claim('r1', 1, 60_000);
      await queue.fail(doomed.id, 'x', null);
      const onRetry = queue.waitForWork('r1', { maxWaitMs: 10_000 });
      await other.retryDead(doomed.id);
      assert.equal(await onRetry, true);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// SQLite

const tempDir = mkdtempSync(join(tmpdir(), 'manifold-queue-'));
after(() => rmSync(tempDir, { recursive: true, force: true }));
let fileCount = 0;

const newSqliteStore: NewStore = async (t, options = {}) => {
  const path = join(tempDir, `q${++fileCount}.db`);
  const open = (o: StoreOptions) => {
    // A short busy timeout keeps the "locked store" case fast; in-process instances never contend.
    const queue = new SqliteQueue({ path, busyTimeoutMs: 100, pollMs: 10, ...options, ...o });
    t.after(() => queue.close());
    return queue;
  };
  return {
    queue: open({}),
    reopen: async (o = {}) => open(o),
    breakWrites: async () => {
      // Another connection holding the write lock beyond busy_timeout: the commit fails as it
      // would when the file is locked, the disk is full or the database is closed.
      const locker = new DatabaseSync(path);
      locker.exec('BEGIN IMMEDIATE');
      return async () => {
        locker.exec('ROLLBACK');
        locker.close();
      };
    },
  };
};

runQueueContract('SqliteQueue', newSqliteStore);

describe('SqliteQueue', () => {
  it('migrates a queue file from before issue 16: a job left inflight there is taken when its lease ends', async (t) => {
    const path = join(tempDir, 'v2.db');
    const old = new DatabaseSync(path);
    old.exec('CREATE TABLE defer_schema_version (version INTEGER NOT NULL)');
    const types = { text: 'TEXT', json: 'TEXT', blob: 'BLOB', int: 'INTEGER', time: 'INTEGER' };
    jobMigrations('defer_jobs', 'defer_jobs', types)
      .slice(0, 2)
      .forEach((sql, i) => {
        old.exec(sql);
        old.prepare('INSERT INTO defer_schema_version (version) VALUES (?)').run(i + 1);
      });
    const id = newJobId(T0);
    old
      .prepare(
        `INSERT INTO defer_jobs (id, route, method, url, headers, body, attempts, max_attempts, state, run_at,
           lease_until, created_at, updated_at)
         VALUES (?, 'r1', 'POST', '/', '[]', x'', 1, 3, 'inflight', ?, ?, ?, ?)`,
      )
      .run(id, T0, T0 + 1000, T0, T0);
    old.close();
    const clock = fakeClock();
    const queue = new SqliteQueue({ path, now: clock.now, instance: 'gw-new' });
    t.after(() => queue.close());
    assert.equal((await queue.get(id))?.claimedBy, null);
    assert.equal(await queue.releaseOwn(), 0, 'a claim without a name is nobody\'s previous life');
    clock.advance(1000);
    const [taken] = await queue.claim('r1', 1, 1000);
    assert.deepEqual([taken.id, taken.attempts, taken.claimedBy], [id, 2, 'gw-new']);
  });

  it('rejects bad options, naming the option', () => {
    const path = join(tempDir, 'options.db');
    const cases: Array<[object, string]> = [
      [{ path: ':memory:' }, 'path'],
      [{ path: '' }, 'path'],
      [{ path, busyTimeoutMs: -1 }, 'busyTimeoutMs'],
      [{ path, maxBatch: 0 }, 'maxBatch'],
      [{ path, maxWaiting: 1.5 }, 'maxWaiting'],
      [{ path, pollMs: '10' }, 'pollMs'],
      [{ path, now: 5 }, 'now'],
      [{ path, instance: '' }, 'instance'],
    ];
    for (const [options, option] of cases) {
      assert.throws(
        () => new SqliteQueue(options as never),
        (err) =>
          err instanceof QueueOptionError && err.option === option && err.message.includes(`"${option}"`),
      );
    }
  });

  it('puts the file in WAL mode (durable commits without blocking readers)', (t) => {
    const path = join(tempDir, 'wal.db');
    const queue = new SqliteQueue({ path });
    t.after(() => queue.close());
    const probe = new DatabaseSync(path);
    t.after(() => probe.close());
    assert.deepEqual({ ...probe.prepare('PRAGMA journal_mode').get() }, { journal_mode: 'wal' });
  });

  it('claims are exclusive across processes', async (t) => {
    const path = join(tempDir, 'processes.db');
    const queue = new SqliteQueue({ path });
    t.after(() => queue.close());
    const ids = await Promise.all(
      Array.from({ length: 200 }, (_, i) => queue.enqueue(job({ url: `/${i}` }))),
    );

    const moduleUrl = new URL('../../src/defer/sqlite-queue.ts', import.meta.url).href;
    // Each child opens the same file, says "ready", waits for "go", claims one job at a time
    // until none is left and prints the ids it got. Every claimer pauses 1 ms after a claim, as
    // a deliverer sending the job would: SQLite's busy handler is not fair, and a process
    // writing back-to-back can keep the lock from the others for the whole run.
    const script = `
      import { SqliteQueue } from ${JSON.stringify(moduleUrl)};
      import { once } from 'node:events';
      const queue = new SqliteQueue({ path: process.argv[1] });
      process.stdout.write('ready\\n');
      await once(process.stdin, 'data');
      const ids = [];
      for (let jobs; (jobs = await queue.claim('r1', 1, 60000)).length > 0; ) {
        ids.push(...jobs.map((j) => j.id));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      await queue.close();
      process.stdout.write(JSON.stringify(ids) + '\\n');
      process.exit(0);
    `;
    const children = Array.from({ length: 2 }, () => {
      const child = spawn(process.execPath, ['--input-type=module', '--no-warnings', '-e', script, path], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      t.after(() => child.kill());
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      return { child, lines };
    });
    for (const { lines } of children) assert.equal((await lines.next()).value, 'ready');
    for (const { child } of children) child.stdin.write('go\n');

    const [mine, ...theirs] = await Promise.all([
      drainConcurrently([queue], 2, 1, 1),
      ...children.map(async ({ child, lines }) => {
        const line = (await lines.next()).value as string;
        await once(child, 'exit');
        return JSON.parse(line) as string[];
      }),
    ]);
    const all = [mine, ...theirs].flat();
    assert.equal(all.length, 200, 'each job claimed exactly once');
    assert.deepEqual(new Set(all), new Set(ids.map((r) => r.id)));
    // Which process wins the lock most is up to SQLite's busy handler; at least two must interleave.
    assert.ok(
      [mine, ...theirs].filter((got) => got.length > 0).length >= 2,
      'claims came from several processes',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const newPgStore: NewStore = async (t, options = {}) => {
  const schema = newSchemaName('queue');
  const opened: Queue[] = [];
  t.after(async () => {
    for (const queue of opened.reverse()) await queue.close();
    await dropSchema(schema);
  });
  const open = async (o: StoreOptions) => {
    const queue = await PgQueue.open({ connectionString: PG_URL, schema, poolSize: 4, ...options, ...o });
    opened.push(queue);
    return queue;
  };
  return {
    queue: await open({}),
    reopen: open,
    breakWrites: async () => {
      // A constraint no row satisfies: every INSERT fails at commit time, as on a full disk.
      await pgQuery(`ALTER TABLE "${schema}".jobs ADD CONSTRAINT unwritable CHECK (false) NOT VALID`);
      return async () => {
        await pgQuery(`ALTER TABLE "${schema}".jobs DROP CONSTRAINT unwritable`);
      };
    },
  };
};

runQueueContract('PgQueue', newPgStore);

describe('PgQueue', () => {
  it('rejects bad options synchronously, naming the option', () => {
    const cases: Array<[object, string]> = [
      [{ connectionString: '' }, 'connectionString'],
      [{ connectionString: PG_URL, schema: 'Bad-Name' }, 'schema'],
      [{ connectionString: PG_URL, schema: 'x'.repeat(49) }, 'schema'],
      [{ connectionString: PG_URL, poolSize: 0 }, 'poolSize'],
      [{ connectionString: PG_URL, maxBatch: 'many' }, 'maxBatch'],
      [{ connectionString: PG_URL, onError: 'log' }, 'onError'],
    ];
    for (const [options, option] of cases) {
      assert.throws(
        () => PgQueue.open(options as never),
        (err) => err instanceof QueueOptionError && err.option === option,
      );
    }
  });

  it('open rejects when the database cannot be reached', async () => {
    // Port 1 on loopback refuses at once.
    await assert.rejects(
      PgQueue.open({ connectionString: 'postgres://postgres@127.0.0.1:1/test', connectTimeoutMs: 2000 }),
      /ECONNREFUSED/,
    );
  });

  it('reconnects a lost LISTEN connection and keeps waking waiters', async (t) => {
    const schema = newSchemaName('queue');
    const errors: Error[] = [];
    const queue = await PgQueue.open({
      connectionString: PG_URL,
      schema,
      reconnectMs: 10,
      onError: (err) => errors.push(err),
    });
    const other = await PgQueue.open({
      connectionString: PG_URL,
      schema,
      reconnectMs: 10,
      onError: () => {},
    });
    t.after(async () => {
      await queue.close();
      await other.close();
      await dropSchema(schema);
    });
    const listenerPids = async () =>
      (
        await pgQuery<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity WHERE query = $1 AND pid <> pg_backend_pid() ORDER BY pid`,
          [`LISTEN "${schema}.defer"`],
        )
      ).rows.map((r) => r.pid);
    const before = await listenerPids();
    assert.equal(before.length, 2, 'one LISTEN connection per instance');

    await queue.claim('r1', 1, 1000);
    await pgQuery('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [before]);
    // Notifications sent while disconnected are lost, so the reconnect itself wakes waiters.
    assert.equal(await queue.waitForWork('r1', { maxWaitMs: 10_000 }), true, 'woken by the reconnect');
    assert.ok(errors.length > 0, 'the lost connection was reported through onError');
    await until(async () => {
      const now = await listenerPids();
      return now.length === 2 && now.every((pid) => !before.includes(pid));
    }, 'both instances listening again');

    // From here only a NOTIFY can wake the waiter.
    await queue.claim('r1', 1, 1000);
    const woken = queue.waitForWork('r1', { maxWaitMs: 10_000 });
    await other.enqueue(job());
    assert.equal(await woken, true, 'woken by the NOTIFY of an enqueue on another instance');
  });

  it('several gateways can create and migrate the same schema at once', async (t) => {
    const schema = newSchemaName('queue');
    const queues = await Promise.all(
      Array.from({ length: 4 }, () => PgQueue.open({ connectionString: PG_URL, schema, poolSize: 2 })),
    );
    t.after(async () => {
      for (const queue of queues) await queue.close();
      await dropSchema(schema);
    });
    const { id } = await queues[0].enqueue(job());
    assert.equal((await queues[3].get(id))?.id, id);
    const { rows } = await pgQuery(`SELECT version FROM "${schema}".schema_version ORDER BY version`);
    assert.deepEqual(rows, [{ version: 1 }, { version: 2 }, { version: 3 }]);
  });
});
