/**
 * Issue 6 end to end in one process: a `defer` route of the real gateway (config → snapshot →
 * pipeline → accept → store → deliverer → forward) against a real receiving upstream, for both
 * stores (SQLite in a temp dir, PostgreSQL in a fresh schema). Everything is observed at the
 * receiver; nothing sleeps for a guessed time. Time is only ever asserted as a lower bound
 * (a limit or a backoff makes things at least this slow), which a slow machine cannot break.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, test } from 'node:test';
import type { Job, JobState, Queue } from '../../src/defer/queue.ts';
import { loadConfigText } from '../../src/config/load.ts';
import { type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { dropSchema, newSchemaName, PG_URL, pgQuery } from '../helpers/pg.ts';

/** One request as the receiver saw it. */
interface Delivery {
  id: string;
  attempt: number;
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** performance.now() at arrival. */
  at: number;
}

type Answer = (d: Delivery, res: ServerResponse) => void;

/** A receiving upstream that records every delivery and answers through a swappable function. */
async function startReceiver(t: { after: (fn: () => Promise<void>) => void }) {
  const deliveries: Delivery[] = [];
  let answer: Answer = (_d, res) => res.end('ok');
  const up: Upstream = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const d: Delivery = {
        id: String(req.headers['x-manifold-job-id']),
        attempt: Number(req.headers['x-manifold-attempt']),
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        at: performance.now(),
      };
      deliveries.push(d);
      answer(d, res);
    });
  });
  t.after(() => up.close());
  return {
    up,
    deliveries,
    answer(fn: Answer) {
      answer = fn;
    },
    of: (id: string) => deliveries.filter((d) => d.id === id),
  };
}

const tempDir = mkdtempSync(join(tmpdir(), 'manifold-defer-'));
after(() => rmSync(tempDir, { recursive: true, force: true }));
let files = 0;

interface Store {
  name: string;
  /** The `queue:` block for a new, empty store, and how to remove it. */
  queueYaml(): { yaml: string; where: Where; remove: () => Promise<void> };
  /** Make the store's writes fail until the returned function runs. */
  breakWrites(where: Where): Promise<() => Promise<void>>;
}

/** Where a store keeps its data: the SQLite file, or the PostgreSQL schema. */
type Where = { path: string; schema: string };

const STORES: Store[] = [
  {
    name: 'sqlite',
    queueYaml: () => {
      const path = join(tempDir, `q${++files}.db`);
      const yaml = `queue: { driver: sqlite, path: ${path}, busy_timeout: 50ms }`;
      return { yaml, where: { path, schema: '' }, remove: async () => {} };
    },
    breakWrites: async ({ path }) => {
      // Another connection holds the write lock beyond busy_timeout: the commit fails.
      const locker = new DatabaseSync(path);
      locker.exec('BEGIN IMMEDIATE');
      return async () => {
        locker.exec('ROLLBACK');
        locker.close();
      };
    },
  },
  {
    name: 'postgres',
    queueYaml: () => {
      const schema = newSchemaName('defer');
      const yaml = `queue: { driver: postgres, url: "${PG_URL}", schema: ${schema}, pool_size: 4 }`;
      return { yaml, where: { path: '', schema }, remove: () => dropSchema(schema) };
    },
    breakWrites: async ({ schema }) => {
      await pgQuery(`ALTER TABLE "${schema}".jobs RENAME TO jobs_away`);
      return async () => {
        await pgQuery(`ALTER TABLE "${schema}".jobs_away RENAME TO jobs`);
      };
    },
  },
];

type T = { after: (fn: () => Promise<void>) => void };

async function gateway(t: T, store: Store, receiver: Upstream, defer: string, extra = '') {
  const q = store.queueYaml();
  const yaml = (d: string) => `
log: { level: warn }
pools: { hooks: { targets: [${receiver.url}] } }
${q.yaml}
routes:
  - id: hooks
    match: { path: /hooks/* }
    defer: { pool: hooks, ${d} }
${extra}
`;
  const gw: Gateway = await startGateway(yaml(defer));
  t.after(async () => {
    await gw.close();
    await q.remove();
  });
  const queue = gw.runtime.defer.queue as Queue;
  /** Serves the same gateway with other `defer` settings, as a reload does. */
  const reload = (d: string) => gw.runtime.apply(loadConfigText(yaml(d), 'reload.yaml', { env: {} }).config);
  return { gw, queue, where: q.where, reload };
}

function post(gw: Gateway, path: string, body = '{}', headers: Record<string, string> = {}) {
  return send(`${gw.url}${path}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

async function stateOf(queue: Queue, id: string): Promise<JobState | undefined> {
  return (await queue.get(id))?.state;
}

for (const store of STORES) {
  describe(`defer (${store.name})`, { timeout: 60_000 }, () => {
    test('accept answers 202 with the job id only after the commit; the receiver gets the request', async (t) => {
      const rx = await startReceiver(t);
      const { gw, queue } = await gateway(t, store, rx.up, 'status: 202');
      const res = await send(`${gw.url}/hooks/github?x=1&y=2`, {
        method: 'POST',
        body: '{"event":"push"}',
        headers: [
          'Content-Type',
          'application/json',
          'Connection',
          'keep-alive, x-hop',
          'X-Hop',
          'secret',
          'X-Dup',
          'one',
          'X-Dup',
          'two',
          'X-Manifold-Attempt',
          '99',
        ],
      });
      assert.equal(res.status, 202);
      const { id } = res.json<{ id: string }>();
      assert.match(id, /^[0-9a-f-]{36}$/);
      assert.equal(res.headers['x-manifold-job-id'], id);
      assert.equal(res.headers['content-type'], 'application/json');
      // Acknowledged means stored: the job is there the moment the answer is.
      assert.ok(await queue.get(id), 'the acknowledged job is in the store');

      await until(() => rx.of(id).length === 1, 'the delivery');
      const [d] = rx.of(id);
      assert.equal(d.method, 'POST');
      assert.equal(d.url, '/hooks/github?x=1&y=2');
      assert.equal(d.body, '{"event":"push"}');
      assert.equal(d.attempt, 1);
      assert.equal(d.headers['content-type'], 'application/json');
      assert.equal(d.headers['x-dup'], 'one, two');
      assert.equal(d.headers['x-hop'], undefined, 'headers named in Connection are dropped');
      assert.equal(d.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(d.headers.via, '1.1 manifold');
      await until(async () => (await stateOf(queue, id)) === 'done', 'the job done');
      assert.equal(rx.of(id).length, 1);
    });

    test('a failed delivery is retried with exponential backoff until it succeeds', async (t) => {
      const rx = await startReceiver(t);
      const { gw, queue } = await gateway(
        t,
        store,
        rx.up,
        'max_attempts: 5, backoff: { base: 100ms, max: 1s, jitter: none }',
      );
      rx.answer((d, res) => {
        res.statusCode = d.attempt < 3 ? 503 : 204;
        res.end(d.attempt < 3 ? 'not now' : '');
      });
      const { id } = (await post(gw, '/hooks/a')).json<{ id: string }>();
      await until(async () => (await stateOf(queue, id)) === 'done', 'delivered on the third attempt');
      const seen = rx.of(id);
      assert.deepEqual(
        seen.map((d) => d.attempt),
        [1, 2, 3],
      );
      // Backoff without jitter: 100 ms after the first failure, 200 ms after the second. Lower
      // bounds, with room for the receiver (in this process) stamping an arrival late.
      assert.ok(seen[1].at - seen[0].at >= 80, `first retry after ${seen[1].at - seen[0].at} ms`);
      assert.ok(seen[2].at - seen[1].at >= 170, `second retry after ${seen[2].at - seen[1].at} ms`);
    });

    test('out of attempts → dead letter with the last error; a replay delivers it', async (t) => {
      const rx = await startReceiver(t);
      const { gw, queue } = await gateway(
        t,
        store,
        rx.up,
        'max_attempts: 2, backoff: { base: 10ms, max: 10ms }',
      );
      let healthy = false;
      rx.answer((_d, res) => {
        res.statusCode = healthy ? 200 : 500;
        res.end(healthy ? 'ok' : 'database is down');
      });
      const { id } = (await post(gw, '/hooks/a')).json<{ id: string }>();
      const dead = (await until(
        async () => ((await queue.get(id))?.state === 'dead' ? queue.get(id) : null),
        'the dead letter',
      )) as Job;
      assert.equal(dead.attempts, 2);
      assert.match(dead.lastError ?? '', /answered 500: database is down/);
      assert.equal(rx.of(id).length, 2);

      healthy = true;
      assert.equal(await queue.retryAllDead('hooks'), 1);
      await until(async () => (await stateOf(queue, id)) === 'done', 'the replayed job delivered');
      assert.deepEqual(
        rx.of(id).map((d) => d.attempt),
        [1, 2, 1],
        'the replay starts counting again',
      );
    });

    test('rate: deliveries start no faster than the route allows', async (t) => {
      const rx = await startReceiver(t);
      // 20/s with bursts of 2: 40 jobs take at least (40 - 2) / 20 s = 1.9 s; without the limit,
      // a few ms. The bounds leave room for arrivals stamped late by a busy test process.
      const N = 40;
      const { gw, queue } = await gateway(t, store, rx.up, 'rate: 20/s');
      const ids = await Promise.all(
        Array.from({ length: N }, async (_, i) => (await post(gw, `/hooks/${i}`)).json<{ id: string }>().id),
      );
      await until(() => rx.deliveries.length >= N, 'every delivery', 20_000);
      const at = rx.deliveries.map((d) => d.at).sort((a, b) => a - b);
      const span = at[N - 1] - at[0];
      assert.ok(span >= 1900 * 0.75, `${N} deliveries at 20/s spanned only ${Math.round(span)} ms`);
      // Over any one second, no more than the rate plus the burst (and some arrival jitter).
      for (let i = 0; i < at.length; i++) {
        const inWindow = at.filter((x) => x >= at[i] && x < at[i] + 1000).length;
        assert.ok(inWindow <= 20 + 2 + 6, `${inWindow} deliveries within one second`);
      }
      await until(async () => (await queue.depth('hooks'))[0].done === N, 'all done');
      assert.equal(new Set(rx.deliveries.map((d) => d.id)).size, ids.length);
    });

    test('concurrency: never more deliveries in flight than the route allows', async (t) => {
      const rx = await startReceiver(t);
      const { gw, queue } = await gateway(t, store, rx.up, 'concurrency: 3');
      const open: ServerResponse[] = [];
      let total = 0;
      let maxOpen = 0;
      const N = 10;
      // Hold every delivery until the limit is reached (or the last jobs are in), then answer them all.
      rx.answer((_d, res) => {
        open.push(res);
        total++;
        maxOpen = Math.max(maxOpen, open.length);
        if (open.length === 3 || total === N) for (const r of open.splice(0)) r.end('ok');
      });
      await Promise.all(Array.from({ length: N }, (_, i) => post(gw, `/hooks/${i}`)));
      await until(async () => (await queue.depth('hooks'))[0].done === N, 'all done', 20_000);
      assert.equal(maxOpen, 3, 'the receiver saw exactly the limit in flight, never more');
    });

    test('a reload changes the rate of a running deliverer (no restart)', async (t) => {
      const rx = await startReceiver(t);
      // One delivery an hour (the burst of one goes at once), then the rest wait.
      const { gw, queue, reload } = await gateway(t, store, rx.up, 'rate: 1/h');
      for (let i = 0; i < 5; i++) await post(gw, `/hooks/${i}`);
      await until(() => rx.deliveries.length === 1, 'the one delivery the rate allows');
      assert.equal((await queue.depth('hooks'))[0].pending, 4, 'the rest is held back');
      reload('concurrency: 8');
      await until(
        async () => (await queue.depth('hooks'))[0].done === 5,
        'the backlog delivered after the reload',
      );
    });

    test('Idempotency-Key: a repeated request gets the first job id and is delivered once', async (t) => {
      const rx = await startReceiver(t);
      const { gw, queue } = await gateway(t, store, rx.up, 'status: 202');
      const first = await post(gw, '/hooks/a', '{"n":1}', { 'idempotency-key': 'order-42' });
      const again = await Promise.all([
        post(gw, '/hooks/a', '{"n":2}', { 'idempotency-key': 'order-42' }),
        post(gw, '/hooks/a', '{"n":3}', { 'idempotency-key': 'order-42' }),
      ]);
      const id = first.json<{ id: string }>().id;
      for (const r of again) {
        assert.equal(r.status, 202);
        assert.equal(r.json<{ id: string }>().id, id);
        assert.equal(r.headers['x-manifold-job-id'], id);
      }
      const other = (await post(gw, '/hooks/a', '{}', { 'idempotency-key': 'order-43' })).json<{
        id: string;
      }>();
      assert.notEqual(other.id, id);
      await until(async () => (await queue.depth('hooks'))[0].done === 2, 'both jobs done');
      assert.equal(rx.of(id).length, 1);
      assert.equal(rx.of(id)[0].body, '{"n":1}');
      const tooLong = await post(gw, '/hooks/a', '{}', { 'idempotency-key': 'k'.repeat(257) });
      assert.equal(tooLong.status, 400);
    });

    test('503 QUEUE_UNAVAILABLE when the store cannot commit; nothing is stored or delivered', async (t) => {
      const rx = await startReceiver(t);
      const g = await gateway(t, store, rx.up, 'status: 202');
      const restore = await store.breakWrites(g.where);
      let refused: Awaited<ReturnType<typeof post>>;
      try {
        refused = await post(g.gw, '/hooks/a', '{"lost":true}');
      } finally {
        await restore();
      }
      assert.equal(refused.status, 503);
      assert.equal(refused.json<{ error: { code: string } }>().error.code, 'QUEUE_UNAVAILABLE');
      assert.equal(refused.headers['x-manifold-job-id'], undefined);
      const ok = (await post(g.gw, '/hooks/b', '{}')).json<{ id: string }>();
      await until(() => rx.of(ok.id).length === 1, 'the store works again');
      const depth = (await g.queue.depth('hooks'))[0];
      assert.equal(depth.pending + depth.inflight + depth.done + depth.dead, 1, 'only the acknowledged job');
      assert.ok(!rx.deliveries.some((d) => d.body.includes('lost')));
    });

    test('a body over max_body_bytes is refused with 413 and not stored', async (t) => {
      const rx = await startReceiver(t);
      const { gw, queue } = await gateway(t, store, rx.up, 'max_body_bytes: 64');
      const big = await post(gw, '/hooks/a', 'x'.repeat(65));
      assert.equal(big.status, 413);
      const chunked = await send(`${gw.url}/hooks/a`, {
        method: 'POST',
        headers: ['Transfer-Encoding', 'chunked'],
        body: 'y'.repeat(100),
      });
      assert.equal(chunked.status, 413);
      assert.equal((await post(gw, '/hooks/a', 'z'.repeat(64))).status, 202);
      const depth = (await queue.depth('hooks'))[0];
      assert.equal(depth.pending + depth.inflight + depth.done, 1);
    });

    test('overflow: under the rate a request is delivered directly and acknowledged after the target accepted it', async (t) => {
      const rx = await startReceiver(t);
      // One direct delivery per minute (a burst of one): the first request goes direct, the next is queued.
      const { gw, queue } = await gateway(
        t,
        store,
        rx.up,
        'overflow: { rate: 1/m }, backoff: { base: 10ms }',
      );
      let hold: (() => void) | null = null;
      rx.answer((d, res) => {
        if (d.attempt === 0) hold = () => res.end('ok');
        else res.end('ok');
      });
      let answered = false;
      const direct = post(gw, '/hooks/direct').then((r) => {
        answered = true;
        return r;
      });
      await until(() => hold !== null, 'the direct delivery at the receiver');
      assert.equal(answered, false, 'no answer before the target accepted the direct delivery');
      (hold as unknown as () => void)();
      const res = await direct;
      assert.equal(res.status, 202);
      const id = res.json<{ id: string }>().id;
      assert.deepEqual(
        rx.of(id).map((d) => d.attempt),
        [0],
      );
      assert.equal(await queue.get(id), null, 'a direct delivery stores nothing');

      const queued = (await post(gw, '/hooks/queued')).json<{ id: string }>().id;
      await until(() => rx.of(queued).length === 1, 'the excess delivered from the queue');
      assert.equal(rx.of(queued)[0].attempt, 1);
    });

    test('overflow: a failed direct delivery is queued under the same job id', async (t) => {
      const rx = await startReceiver(t);
      const { gw, queue } = await gateway(
        t,
        store,
        rx.up,
        'overflow: { rate: 100/s }, backoff: { base: 10ms }',
      );
      rx.answer((d, res) => {
        res.statusCode = d.attempt === 0 ? 500 : 200;
        res.end();
      });
      const { id } = (await post(gw, '/hooks/a')).json<{ id: string }>();
      await until(async () => (await stateOf(queue, id)) === 'done', 'delivered from the queue');
      assert.deepEqual(
        rx.of(id).map((d) => d.attempt),
        [0, 1],
      );
    });

    test('graceful shutdown: in-flight deliveries finish within the grace period, the rest are released', async (t) => {
      const rx = await startReceiver(t);
      const held: ServerResponse[] = [];
      rx.answer((_d, res) => held.push(res));
      const { gw, where } = await gateway(t, store, rx.up, 'status: 202');
      const a = (await post(gw, '/hooks/a')).json<{ id: string }>().id;
      await until(() => held.length === 1, 'the first delivery in flight');
      const closing = gw.runtime.close(5000);
      held.shift()!.end('ok'); // answered within the grace period: completed
      await closing;
      await reopen(store, where, async (q) => {
        assert.equal(await stateOf(q, a), 'done');
      });
    });

    test('graceful shutdown: a delivery still running after the grace period is aborted and its lease released', async (t) => {
      const rx = await startReceiver(t);
      const held: ServerResponse[] = [];
      rx.answer((_d, res) => held.push(res));
      const { gw, where } = await gateway(t, store, rx.up, 'status: 202');
      const id = (await post(gw, '/hooks/a')).json<{ id: string }>().id;
      await until(() => held.length === 1, 'the delivery in flight');
      await gw.runtime.close(100);
      await reopen(store, where, async (q) => {
        const job = await q.get(id);
        assert.equal(job?.state, 'pending', 'released, claimable again at once');
        assert.equal(job?.attempts, 0, 'the aborted attempt is not counted');
      });
    });
  });
}

/** Opens the store a closed gateway used, runs `fn`, closes it. */
async function reopen<R>(store: Store, where: Where, fn: (q: Queue) => Promise<R>): Promise<R> {
  let q: Queue;
  if (store.name === 'sqlite') {
    const { SqliteQueue } = await import('../../src/defer/sqlite-queue.ts');
    q = new SqliteQueue({ path: where.path });
  } else {
    const { PgQueue } = await import('../../src/defer/pg-queue.ts');
    q = await PgQueue.open({ connectionString: PG_URL, schema: where.schema, poolSize: 1 });
  }
  try {
    return await fn(q);
  } finally {
    await q.close();
  }
}
