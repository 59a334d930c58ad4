/**
 * Issue #4: strategies over several targets (failover, fanout, hedge), terminal statuses, body
 * replay limits and the three-servers scenario, against real upstreams on port 0 that fail,
 * stall or answer 5xx/4xx on purpose. Assertions are about behaviour (who was called, in what
 * order, what the client got, which connections were aborted), never about how fast.
 */
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { countersFor } from '../../src/strategy/stats.ts';
import {
  deadAddress,
  type Gateway,
  startGateway,
  startUpstream,
  type Upstream,
  until,
} from '../helpers/index.ts';
import { type Reply, send } from '../helpers/http.ts';

/** An upstream with a name, a log of every request it saw and of those aborted under it. */
interface Target extends Upstream {
  name: string;
  id: string;
  /** Requests whose connection closed before the answer was complete. */
  aborted: number;
  /** Bodies received, in order (only complete ones). */
  bodies: Buffer[];
  /** Requests held by a stalling target, answered by `release()`. */
  held: ServerResponse[];
  release(status?: number): void;
}

type Behaviour = (t: Target, req: IncomingMessage, res: ServerResponse) => void;

const answer =
  (status: number): Behaviour =>
  (t, _req, res) => {
    res.writeHead(status, { 'x-upstream': t.name, 'content-type': 'text/plain' });
    res.end(t.name);
  };

/** Holds every request until `release()` (or until the gateway gives up on it). */
const stall: Behaviour = (t, _req, res) => {
  t.held.push(res);
};

/** Shared order of arrival across the targets of one test. */
let arrivals: string[] = [];
let inflight = 0;
let maxInflight = 0;

async function target(name: string, behaviour: Behaviour): Promise<Target> {
  // eslint-disable-next-line prefer-const -- assigned after the handler closure that reads it is created
  let self: Target;
  const up = await startUpstream((req, res) => {
    arrivals.push(name);
    inflight++;
    maxInflight = Math.max(maxInflight, inflight);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => self.bodies.push(Buffer.concat(chunks)));
    res.on('close', () => {
      inflight--;
      if (!res.writableFinished) self.aborted++;
    });
    behaviour(self, req, res);
  });
  self = Object.assign(up, {
    name,
    id: `127.0.0.1:${up.port}`,
    aborted: 0,
    bodies: [] as Buffer[],
    held: [] as ServerResponse[],
    release(status = 200) {
      for (const res of self.held.splice(0)) {
        if (res.destroyed) continue;
        res.writeHead(status, { 'x-upstream': name });
        res.end(name);
      }
    },
  });
  return self;
}

function resetArrivals(): void {
  arrivals = [];
  inflight = 0;
  maxInflight = 0;
}

interface AttemptLog {
  target: string;
  status?: number;
  error?: string;
  duration_ms: number;
  outcome: string;
  hedge?: boolean;
}

/** The access-log line of the request with this id (written when the response closes). */
function accessLine(gw: Gateway, reply: Pick<Reply, 'headers'>): Promise<Record<string, unknown>> {
  const id = reply.headers['x-request-id'];
  return until(() => gw.logs.access().find((l) => l.req_id === id), 'access-log line');
}

describe('failover', () => {
  let a503: Target;
  let b503: Target;
  let c200: Target;
  let d200: Target;
  let e200: Target;
  let slow: Target;
  let dead: string;
  let dead2: string;
  let gw: Gateway;
  before(async () => {
    [a503, b503, c200, d200, e200, slow] = await Promise.all([
      target('a', answer(503)),
      target('b', answer(503)),
      target('c', answer(200)),
      target('d', answer(200)),
      target('e', answer(200)),
      target('slow', stall),
    ]);
    dead = await deadAddress();
    dead2 = await deadAddress();
    gw = await startGateway(`
pools:
  order: { targets: [${a503.url}, ${dead}, ${c200.url}, ${d200.url}] }
  two503: { targets: [${a503.url}, ${b503.url}, ${c200.url}] }
  dead: { targets: [${dead}, ${dead2}] }
  post: { targets: [${dead}, ${a503.url}, ${e200.url}] }
  slow: { targets: [${slow.url}, ${e200.url}] }
routes:
  - id: fo-order
    match: { path: /order }
    proxy: { pool: order, strategy: failover, max_attempts: 4 }
  - id: fo-max
    match: { path: /max }
    proxy: { pool: two503, strategy: failover, max_attempts: 2 }
  - id: fo-dead
    match: { path: /dead }
    proxy: { pool: dead, strategy: failover }
  - id: fo-post
    match: { path: /post }
    proxy: { pool: post, strategy: failover }
  - id: fo-post-lenient
    match: { path: /post-lenient }
    proxy: { pool: post, strategy: failover, retry_non_idempotent: true }
  - id: fo-per-try
    match: { path: /per-try }
    proxy: { pool: slow, strategy: failover }
    headers_timeout: 100ms
  - id: fo-deadline
    match: { path: /deadline }
    proxy: { pool: slow, strategy: failover }
    timeout: 300ms
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([a503, b503, c200, d200, e200, slow].map((t) => t.close()));
  });

  test('targets are tried in listed order, one at a time, up to the first accepted answer', async () => {
    resetArrivals();
    for (let i = 0; i < 3; i++) {
      const r = await send(`${gw.url}/order`);
      assert.equal(r.status, 200);
      assert.equal(r.text, 'c');
      assert.equal(r.headers['x-manifold-target'], c200.id);
    }
    // a (503) then the dead one (refused) then c, every time; d is never called.
    assert.deepEqual(arrivals, ['a', 'c', 'a', 'c', 'a', 'c']);
    assert.equal(d200.requests.length, 0);
    assert.equal(maxInflight, 1);
    const r = await send(`${gw.url}/order`);
    const line = await accessLine(gw, r);
    const attempts = line.attempts as AttemptLog[];
    assert.deepEqual(
      attempts.map((x) => [x.target, x.status ?? x.error, x.outcome]),
      [
        [a503.id, 503, 'rejected'],
        [dead.slice('http://'.length), 'TARGET_UNREACHABLE', 'failed'],
        [c200.id, 200, 'accepted'],
      ],
    );
    for (const x of attempts) assert.equal(typeof x.duration_ms, 'number');
    assert.equal(line.target, c200.id);
  });

  test('max_attempts stops it; the last answer that was not accepted is relayed as is', async () => {
    const before = c200.requests.length;
    const r = await send(`${gw.url}/max`);
    assert.equal(r.status, 503);
    assert.equal(r.text, 'b');
    assert.equal(r.headers['x-upstream'], 'b');
    assert.equal(r.headers['x-manifold-target'], b503.id);
    assert.equal(c200.requests.length, before);
    const line = await accessLine(gw, r);
    assert.deepEqual(
      (line.attempts as AttemptLog[]).map((x) => x.outcome),
      ['rejected', 'relayed'],
    );
  });

  test('when every attempt fails: 502 with a JSON error listing each attempt', async () => {
    const r = await send(`${gw.url}/dead`);
    assert.equal(r.status, 502);
    const { error } = r.json<{
      error: { code: string; message: string; attempts: AttemptLog[] };
    }>();
    assert.equal(error.code, 'TARGET_UNREACHABLE');
    assert.match(error.message, /^2 attempts failed; last: /);
    assert.deepEqual(
      error.attempts.map((x) => [x.target, x.error]),
      [
        [dead.slice('http://'.length), 'TARGET_UNREACHABLE'],
        [dead2.slice('http://'.length), 'TARGET_UNREACHABLE'],
      ],
    );
    for (const x of error.attempts) assert.equal(typeof x.duration_ms, 'number');
  });

  test('a POST is retried after a connect failure only, unless retry_non_idempotent', async () => {
    const before = e200.requests.length;
    const strict = await send(`${gw.url}/post`, { method: 'POST', body: 'payload' });
    // The dead target refused the connection (retried); the 503 came after a's headers: relayed.
    assert.equal(strict.status, 503);
    assert.equal(strict.headers['x-upstream'], 'a');
    assert.equal(e200.requests.length, before);
    const lenient = await send(`${gw.url}/post-lenient`, { method: 'POST', body: 'payload' });
    assert.equal(lenient.status, 200);
    assert.equal(lenient.text, 'e');
    await until(() => e200.bodies.at(-1)?.toString() === 'payload', 'the replayed body');
  });

  test('a per-try timeout (headers_timeout) moves on to the next target', async () => {
    const aborted = slow.aborted;
    const r = await send(`${gw.url}/per-try`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'e');
    await until(() => slow.aborted > aborted, 'the timed-out attempt to be closed');
  });

  test('the route deadline ends every attempt: 504 listing them', async () => {
    const r = await send(`${gw.url}/deadline`);
    assert.equal(r.status, 504);
    const { error } = r.json<{ error: { code: string; attempts: AttemptLog[] } }>();
    assert.equal(error.code, 'TARGET_TIMEOUT');
    assert.deepEqual(
      error.attempts.map((x) => [x.target, x.error]),
      [[slow.id, 'TARGET_TIMEOUT']],
    );
  });
});

describe('terminal statuses', () => {
  let a404: Target;
  let a429: Target;
  let b: Target;
  let gw: Gateway;
  before(async () => {
    [a404, a429, b] = await Promise.all([
      target('a404', answer(404)),
      target('a429', answer(429)),
      target('b', answer(200)),
    ]);
    gw = await startGateway(`
pools:
  p404: { targets: [${a404.url}, ${b.url}] }
  p429: { targets: [${a429.url}, ${b.url}] }
routes:
  - { match: { path: /default }, proxy: { pool: p404, strategy: failover } }
  - { match: { path: /no4xx }, proxy: { pool: p404, strategy: failover, terminal: [100, 200, 300] } }
  - { match: { path: /exact }, proxy: { pool: p404, strategy: failover, terminal: [200, 404] } }
  - match: { path: /range }
    proxy: { pool: p429, strategy: failover, terminal: [100, 200, 300, "400-428", "430-499"] }
  - { match: { path: /no-header }, proxy: { pool: p404, strategy: failover, target_header: false } }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([a404, a429, b].map((t) => t.close()));
  });

  test('by default a 4xx is an answer; without the 400 class it means "try the next"', async () => {
    const dflt = await send(`${gw.url}/default`);
    assert.equal(dflt.status, 404);
    assert.equal(dflt.headers['x-manifold-target'], a404.id);
    const no4xx = await send(`${gw.url}/no4xx`);
    assert.equal(no4xx.status, 200);
    assert.equal(no4xx.headers['x-manifold-target'], b.id);
  });

  test('exact codes and ranges', async () => {
    assert.equal((await send(`${gw.url}/exact`)).status, 404);
    const range = await send(`${gw.url}/range`);
    assert.equal(range.status, 200);
    assert.equal(range.text, 'b');
  });

  test('target_header: false leaves x-manifold-target out', async () => {
    const r = await send(`${gw.url}/no-header`);
    assert.equal(r.status, 404);
    assert.equal(r.headers['x-manifold-target'], undefined);
  });
});

/** Sends a request whose body is written in several chunks without Content-Length. */
function sendChunked(url: string, chunks: Buffer[]): Promise<Pick<Reply, 'status' | 'text' | 'headers'>> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest(
      { hostname: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
      },
    );
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

describe('fanout', () => {
  let a503: Target;
  let slowOk: Target;
  let fast: Target;
  let stalled: Target;
  let echo: Target[];
  let gw: Gateway;
  before(async () => {
    [a503, slowOk, fast, stalled] = await Promise.all([
      target('a503', answer(503)),
      target('slow-ok', stall),
      target('fast', answer(200)),
      target('stalled', stall),
    ]);
    // Answer with the size of the body they received, once it is complete.
    const echoing: Behaviour = (t, req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => {
        res.writeHead(200, { 'x-upstream': t.name });
        res.end(String(n));
      });
    };
    echo = await Promise.all(['e1', 'e2', 'e3'].map((n) => target(n, echoing)));
    gw = await startGateway(`
pools:
  race: { targets: [${a503.url}, ${slowOk.url}, ${fast.url}, ${stalled.url}] }
  echo: { targets: [${echo.map((e) => e.url).join(', ')}] }
  bad: { targets: [${a503.url}, ${stalled.url}] }
routes:
  - id: fan-race
    match: { path: /race }
    proxy: { pool: race, strategy: fanout }
  - id: fan-echo
    match: { path: /echo }
    proxy: { pool: echo, strategy: fanout }
  - id: fan-width
    match: { path: /width }
    proxy: { pool: echo, strategy: fanout, width: 2 }
  - id: fan-bad
    match: { path: /bad }
    proxy: { pool: bad, strategy: fanout }
    timeout: 300ms
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([a503, slowOk, fast, stalled, ...echo].map((t) => t.close()));
  });

  test('the fastest accepted answer wins; the losers see their connection aborted', async () => {
    const r = await send(`${gw.url}/race`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'fast');
    assert.equal(r.headers['x-manifold-target'], fast.id);
    // Both slow targets got the request and then lost the connection under it.
    await until(() => slowOk.aborted === 1 && stalled.aborted === 1, 'losers to be aborted');
    assert.equal(slowOk.held.filter((res) => !res.destroyed).length, 0);
    const line = await accessLine(gw, r);
    const outcomes = Object.fromEntries((line.attempts as AttemptLog[]).map((x) => [x.target, x.outcome]));
    assert.deepEqual(outcomes, {
      [a503.id]: 'rejected',
      [slowOk.id]: 'cancelled',
      [fast.id]: 'accepted',
      [stalled.id]: 'cancelled',
    });
  });

  test('a POST goes to every target (fanout is consent), its body replayed to each', async () => {
    const r = await send(`${gw.url}/echo`, { method: 'POST', body: 'x'.repeat(1000) });
    assert.equal(r.status, 200);
    assert.equal(r.text, '1000');
    const line = await accessLine(gw, r);
    assert.equal((line.attempts as AttemptLog[]).length, 3);
  });

  test('width limits how many targets get the request', async () => {
    const r = await send(`${gw.url}/width`);
    assert.equal(r.status, 200);
    const line = await accessLine(gw, r);
    assert.equal((line.attempts as AttemptLog[]).length, 2);
  });

  test('a body over max_replay_bytes (1 MiB) gets a single attempt, streamed intact', async () => {
    // The access line lists attempts when there was more than one: a line without them had one.
    const big = Buffer.alloc(1024 * 1024 + 1, 'b');
    const r = await send(`${gw.url}/echo`, { method: 'POST', body: big });
    assert.equal(r.status, 200);
    assert.equal(r.text, String(big.length));
    assert.equal((await accessLine(gw, r)).attempts, undefined);

    // Chunked: read up to the limit, then the rest streams behind it to the one target.
    const chunked = await sendChunked(`${gw.url}/echo`, [big.subarray(0, 700_000), big.subarray(700_000)]);
    assert.equal(chunked.status, 200);
    assert.equal(chunked.text, String(big.length));
    assert.equal((await accessLine(gw, chunked)).attempts, undefined);

    // A small chunked body is buffered and replayed to every target.
    const small = await sendChunked(`${gw.url}/echo`, [Buffer.from('ab'), Buffer.from('cd')]);
    assert.equal(small.text, '4');
    assert.equal(((await accessLine(gw, small)).attempts as AttemptLog[]).length, 3);
  });

  test('nothing accepted by the deadline: the last answer (503) is relayed, the rest aborted', async () => {
    const aborted = stalled.aborted;
    const r = await send(`${gw.url}/bad`);
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-manifold-target'], a503.id);
    await until(() => stalled.aborted > aborted, 'the stalled attempt to be aborted');
    const line = await accessLine(gw, r);
    const outcomes = Object.fromEntries((line.attempts as AttemptLog[]).map((x) => [x.target, x.outcome]));
    assert.deepEqual(outcomes, { [a503.id]: 'relayed', [stalled.id]: 'failed' });
  });
});

describe('hedge', () => {
  let fastA: Target;
  let slowA: Target;
  let b: Target;
  let gw: Gateway;
  let switchable: Target;
  let switchStall = false;
  before(async () => {
    [fastA, slowA, b] = await Promise.all([
      target('fast-a', answer(200)),
      target('slow-a', stall),
      target('b', answer(200)),
    ]);
    switchable = await target('switchable', (t, req, res) =>
      switchStall ? stall(t, req, res) : answer(200)(t, req, res),
    );
    gw = await startGateway(`
pools:
  fast: { targets: [${fastA.url}, ${b.url}] }
  slow: { targets: [${slowA.url}, ${b.url}] }
  switch: { targets: [${switchable.url}, ${b.url}] }
routes:
  - id: hedge-late
    match: { path: /late }
    proxy: { pool: fast, strategy: hedge, order: listed, hedge_after: 5s }
  - id: hedge-fire
    match: { path: /fire }
    proxy: { pool: slow, strategy: hedge, order: listed, hedge_after: 200ms, hedge_budget: 1 }
  - id: hedge-budget
    match: { path: /budget }
    proxy: { pool: slow, strategy: hedge, order: listed, hedge_after: 20ms, hedge_budget: 0.1, hedge_budget_window: 10m }
  - id: hedge-post
    match: { path: /post }
    proxy: { pool: slow, strategy: hedge, order: listed, hedge_after: 20ms, hedge_budget: 1 }
    timeout: 300ms
  - id: hedge-pct
    match: { path: /pct }
    proxy: { pool: switch, strategy: hedge, order: listed, hedge_after: p50, hedge_budget: 1 }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([fastA, slowA, b, switchable].map((t) => t.close()));
  });

  test('no hedge when the first attempt answers before hedge_after', async () => {
    const before = b.requests.length;
    for (let i = 0; i < 5; i++) {
      const r = await send(`${gw.url}/late`);
      assert.equal(r.headers['x-manifold-target'], fastA.id);
    }
    assert.equal(b.requests.length, before);
    assert.equal(countersFor('hedge-late').hedgesFired, 0);
  });

  test('a hedge fires after hedge_after, wins, and the slow attempt is aborted', async () => {
    const counters = countersFor('hedge-fire');
    let firstAt = 0;
    let hedgeAt = 0;
    slowA.server.prependListener('request', () => (firstAt ||= performance.now()));
    b.server.prependListener('request', () => (hedgeAt ||= performance.now()));
    const aborted = slowA.aborted;
    const r = await send(`${gw.url}/fire`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-manifold-target'], b.id);
    // Not before the delay (lower bound only; the margin covers when each upstream saw it).
    assert.ok(hedgeAt - firstAt >= 150, `hedge sent ${hedgeAt - firstAt} ms after the first attempt`);
    await until(() => slowA.aborted > aborted, 'the slow attempt to be aborted');
    assert.equal(counters.hedgesFired, 1);
    assert.equal(counters.hedgesWon, 1);
    const line = await accessLine(gw, r);
    assert.deepEqual(
      (line.attempts as AttemptLog[]).map((x) => [x.target, x.outcome, x.hedge ?? false]),
      [
        [slowA.id, 'cancelled', false],
        [b.id, 'accepted', true],
      ],
    );
  });

  test('the budget allows at most ⌈10%⌉ extra attempts over the window', async () => {
    const counters = countersFor('hedge-budget');
    const before = b.requests.length;
    const n = 20;
    const replies = Array.from({ length: n }, () => send(`${gw.url}/budget`));
    // Every request has had its hedge timer fire: granted or denied. A hedged request whose hedge
    // has not answered within another hedge_after asks again and is denied (the budget is spent),
    // so denials run from n - 2 to n: under CI load this made an `=== n` wait miss its moment.
    const state = () =>
      `fired ${counters.hedgesFired}, denied ${counters.hedgesDenied}, at b ${b.requests.length - before}, held ${slowA.held.filter((res) => !res.destroyed).length}`;
    await until(() => counters.hedgesFired === 2 && counters.hedgesFired + counters.hedgesDenied >= n, () => `every hedge timer (${state()})`);
    assert.ok(counters.hedgesDenied >= n - 3 && counters.hedgesDenied <= n, state());
    const waiting = () => slowA.held.filter((res) => !res.destroyed).length;
    await until(() => waiting() === n - 2, () => `the unhedged requests to wait on the slow target (${state()})`);
    slowA.release();
    const done = await Promise.all(replies);
    assert.ok(done.every((r) => r.status === 200));
    assert.equal(done.filter((r) => r.headers['x-manifold-target'] === b.id).length, 2);
    assert.equal(b.requests.length - before, 2);
  });

  test('a POST is not hedged without retry_non_idempotent', async () => {
    const counters = countersFor('hedge-post');
    const before = b.requests.length;
    const r = await send(`${gw.url}/post`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 504);
    assert.equal(counters.hedgesFired, 0);
    assert.equal(b.requests.length, before);
  });

  test('pNN: nothing before 20 samples; then hedges at the route percentile', async () => {
    const counters = countersFor('hedge-pct');
    const before = b.requests.length;
    // 20 fast answers: while they run the window has at most 19 samples, so nothing hedges.
    for (let i = 0; i < 20; i++) {
      const r = await send(`${gw.url}/pct`);
      assert.equal(r.headers['x-manifold-target'], switchable.id);
    }
    assert.equal(counters.hedgesFired, 0);
    assert.equal(b.requests.length, before);
    switchStall = true;
    const r = await send(`${gw.url}/pct`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-manifold-target'], b.id);
    assert.equal(counters.hedgesFired, 1);
    assert.equal(counters.hedgesWon, 1);
  });
});

describe('three servers that stop one after another', () => {
  let ts: Target[];
  let gw: Gateway;
  before(async () => {
    ts = await Promise.all(['one', 'two', 'three'].map((n) => target(n, answer(200))));
    gw = await startGateway(`
pools:
  three: { targets: [${ts.map((t) => t.url).join(', ')}] }
routes:
  - match: {}
    proxy: { pool: three, strategy: failover, order: selector }
    timeout: 5s
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all(ts.map((t) => t.close()));
  });

  test('answers keep coming from whoever is alive; then a clear 502, not a hang', async () => {
    interface Result {
      /** Targets fully stopped when the request was sent. */
      stopped: number;
      /** Targets whose stop had begun when the answer came. */
      stopping: number;
      status: number;
      target: string | undefined;
      body: string;
    }
    const results: Result[] = [];
    let stopped = 0;
    let stopping = 0;
    let done = false;
    const client = (async () => {
      while (!done) {
        const sentWith = stopped;
        const r = await send(`${gw.url}/x`);
        const target = r.headers['x-upstream'] as string | undefined;
        results.push({ stopped: sentWith, stopping, status: r.status, target, body: r.text });
      }
    })();
    const answered = (n: number) => () => results.filter((r) => r.stopped === stopped).length >= n;
    await until(answered(10), 'answers with three targets');
    for (const t of ts) {
      stopping++;
      await t.close();
      stopped++;
      await until(answered(10), `answers after ${t.name} stopped`);
    }
    done = true;
    await client;
    // While one target was alive, every answer was a 200 from a target that was not stopped.
    for (const r of results.filter((x) => x.stopping < 3)) {
      assert.equal(r.status, 200, JSON.stringify(r));
      const alive = ts.slice(r.stopped).map((t) => t.name);
      assert.ok(alive.includes(r.target!), `${r.target} answered after it stopped`);
    }
    // Once all are gone, every answer is a 502 that lists the attempts.
    const last = results.filter((x) => x.stopped === 3);
    assert.ok(last.length >= 10);
    for (const r of last) {
      assert.equal(r.status, 502);
      const { error } = JSON.parse(r.body) as { error: { code: string; attempts: unknown[] } };
      assert.equal(error.code, 'TARGET_UNREACHABLE');
      assert.equal(error.attempts.length, 3);
    }
  });
});
