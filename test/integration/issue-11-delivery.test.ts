/**
 * Issue 11 item 2: defer deliveries, queued and direct (overflow mode), spend their attempts
 * through the one strategy runner as `single`: a target that refuses the connection is skipped
 * for another (at most 3 targets per delivery), every attempt is recorded and counted as a
 * proxied request's are (`manifold_attempts_total`, the access log), once, and a delivery
 * past its deadline ends with the deadline's GatewayError code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Queue } from '../../src/defer/queue.ts';
import { deadAddress, type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { parseExposition, total } from '../helpers/prom.ts';

const dir = mkdtempSync(join(tmpdir(), 'manifold-issue-11-delivery-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

type T = { after: (fn: () => unknown) => void };

/** A receiver that records the job id and attempt of each delivery and answers with `answer`. */
async function receiver(t: T, answer: (res: ServerResponse) => void = (res) => res.end('ok')) {
  const seen: Array<{ id: string; attempt: string; host: string }> = [];
  const up: Upstream = await startUpstream((req, res) => {
    seen.push({
      id: String(req.headers['x-manifold-job-id']),
      attempt: String(req.headers['x-manifold-attempt']),
      host: String(req.headers.host),
    });
    req.resume();
    req.on('end', () => answer(res));
  });
  t.after(() => up.close());
  return { up, seen, id: `127.0.0.1:${up.port}` };
}

async function gateway(t: T, targets: string[], defer: string, extra = '') {
  const gw = await startGateway(`
log: { level: info }
pools: { hooks: { targets: [${targets.join(', ')}] } }
queue: { driver: sqlite, path: ${join(dir, `q${++files}.db`)} }
routes:
  - id: hooks
    match: { path: /hooks/* }
    defer: { pool: hooks, ${defer} }
${extra}
`);
  t.after(() => gw.close());
  const queue = gw.runtime.defer.queue as Queue;
  /** Posts one request; resolves with its job id once the gateway answered 202. */
  const post = async (): Promise<string> => {
    const res = await send(`${gw.url}/hooks/a`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 202);
    return res.json<{ id: string }>().id;
  };
  /** The job once it is in `state`. */
  const reach = (id: string, state: string) =>
    until(async () => {
      const j = await queue.get(id);
      return j?.state === state ? j : null;
    }, `the job ${state}`);
  return { gw, queue, post, reach };
}

const metrics = async (gw: Gateway) => parseExposition(await gw.runtime.metrics!.registry.metrics());
const attemptsOf = async (gw: Gateway, target: string, outcome: string) =>
  total(await metrics(gw), 'manifold_attempts_total', { route: 'hooks', pool: 'hooks', target, outcome });
const hostOf = (url: string) => new URL(url).host;

/** The dead target's failed attempt and the live one's accepted attempt, each counted once. */
async function countedOnce(gw: Gateway, dead: string, live: string): Promise<void> {
  const m = await metrics(gw);
  assert.equal(total(m, 'manifold_attempts_total', { route: 'hooks', target: hostOf(dead), outcome: 'failed' }), 1);
  assert.equal(total(m, 'manifold_attempts_total', { route: 'hooks', target: live, outcome: 'accepted' }), 1);
  assert.equal(total(m, 'manifold_attempts_total', { route: 'hooks' }), 2, 'each attempt counted once');
  assert.equal(total(m, 'manifold_attempt_duration_seconds_count', { route: 'hooks' }), 2);
}

test('issue 11: a queued delivery whose first target refuses the connection is delivered by the next; both attempts counted once', async (t) => {
  const live = await receiver(t);
  const dead = await deadAddress();
  // Round-robin's first pick is the first target listed: the dead one.
  const { gw, post, reach } = await gateway(t, [dead, live.up.url], 'backoff: { base: 10ms }');

  const id = await post();
  const job = await reach(id, 'done');
  assert.deepEqual(live.seen, [{ id, attempt: '1', host: `127.0.0.1:${gw.port}` }], 'one delivery, at its first job attempt');
  assert.equal(job.attempts, 1, 'the connect retry is inside one job attempt');

  await countedOnce(gw, dead, live.id);
  const m = await metrics(gw);
  assert.equal(total(m, 'manifold_delivery_attempts_total', { route: 'hooks', outcome: 'delivered' }), 1);
  assert.equal(total(m, 'manifold_retries_total', { route: 'hooks' }), 1, 'the connect retry is a retry');
  // The dead target's failure reached its state (stats and passive health), as a proxy attempt's does.
  const stats = gw.runtime.stats().targets.find((s) => s.id === hostOf(dead));
  assert.equal(stats?.failures, 1);
});

test('issue 11: a delivery tries at most 3 targets that refuse the connection, and keeps the last failure', async (t) => {
  const live = await receiver(t);
  const dead = [await deadAddress(), await deadAddress(), await deadAddress()];
  const { gw, post, reach } = await gateway(t, [...dead, live.up.url], 'max_attempts: 1');

  const job = await reach(await post(), 'dead');
  assert.equal(live.seen.length, 0, 'the fourth target is not tried');
  assert.match(job.lastError ?? '', new RegExp(`^TARGET_UNREACHABLE: cannot reach ${hostOf(dead[2])}`));
  for (const d of dead) assert.equal(await attemptsOf(gw, hostOf(d), 'failed'), 1);
  assert.equal(total(await metrics(gw), 'manifold_attempts_total', { route: 'hooks' }), 3);
});

test('issue 11: a delivery past its deadline ends with TARGET_TIMEOUT, its attempt failed', async (t) => {
  const held: ServerResponse[] = [];
  const slow = await receiver(t, (res) => held.push(res));
  t.after(() => {
    for (const res of held) res.destroy();
  });
  const { gw, post, reach } = await gateway(t, [slow.up.url], 'max_attempts: 1', '    timeout: 100ms');

  const job = await reach(await post(), 'dead');
  assert.equal(held.length, 1, 'the target got the delivery and held it');
  assert.equal(job.lastError, 'TARGET_TIMEOUT: delivery deadline of 100 ms passed');
  assert.equal(await attemptsOf(gw, slow.id, 'failed'), 1);
});

test('issue 11: an overflow delivery retries a refused connection on the next target; its attempts are the request\'s', async (t) => {
  const live = await receiver(t);
  const dead = await deadAddress();
  const { gw, queue, post } = await gateway(t, [dead, live.up.url], 'overflow: { rate: unlimited }');

  const id = await post();
  assert.deepEqual(live.seen, [{ id, attempt: '0', host: `127.0.0.1:${gw.port}` }], 'delivered directly');
  assert.equal(await queue.get(id), null, 'nothing stored');

  const line = await until(() => gw.logs.access().find((l) => l.route === 'hooks'), 'the access line');
  assert.equal(line.target, live.id);
  assert.deepEqual(
    (line.attempts as Array<{ target: string; outcome: string; error?: string }>).map((a) => [a.target, a.outcome, a.error]),
    [
      [hostOf(dead), 'failed', 'TARGET_UNREACHABLE'],
      [live.id, 'accepted', undefined],
    ],
  );
  await countedOnce(gw, dead, live.id);
  assert.equal(total(await metrics(gw), 'manifold_queue_accepted_total', { route: 'hooks', mode: 'direct' }), 1);
});

test('issue 11: with host: target, each attempt of one delivery sends its own target\'s Host', async (t) => {
  const live = await receiver(t);
  const dead = await deadAddress();
  const { post, reach } = await gateway(t, [dead, live.up.url], 'host: target');

  const id = await post();
  await reach(id, 'done');
  assert.deepEqual(live.seen, [{ id, attempt: '1', host: live.id }]);
});
