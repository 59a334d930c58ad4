/**
 * Issue 11 ("one deadline per request"): a `defer` route in overflow mode with a route
 * `timeout`, whose target accepts the connection but answers after the timeout, took the
 * process down (`TypeError: code.startsWith is not a function` in forward.ts classify()),
 * because the overflow delivery built its deadline with `AbortSignal.timeout()` (a
 * DOMException reason) where every other path used a GatewayError. Now every path takes the
 * request's one deadline, whose reason is always a GatewayError: the gateway answers and stays up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadConfigText } from '../../src/config/load.ts';
import { GatewayError } from '../../src/errors.ts';
import { classify } from '../../src/proxy/forward.ts';
import { Deadline } from '../../src/deadline.ts';
import { Registry } from '../../src/upstream/registry.ts';
import { startGateway, startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

const dir = mkdtempSync(join(tmpdir(), 'manifold-issue-11-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('issue 11: an overflow delivery past the route timeout is queued (202) and the gateway stays up', async (t) => {
  const held: ServerResponse[] = [];
  const attempts: number[] = [];
  // Attempt 0 (the direct, overflow delivery) is held past the route timeout; queued ones are answered.
  const up = await startUpstream((req, res) => {
    const attempt = Number(req.headers['x-manifold-attempt']);
    attempts.push(attempt);
    if (attempt === 0) held.push(res);
    else res.end('ok');
  });
  t.after(async () => {
    for (const res of held) res.destroy();
    await up.close();
  });
  const gw = await startGateway(`
log: { level: warn }
pools: { hooks: { targets: [${up.url}] } }
queue: { driver: sqlite, path: ${join(dir, 'q.db')} }
routes:
  - id: hooks
    match: { path: /hooks/* }
    defer: { pool: hooks, overflow: { rate: 100/s }, backoff: { base: 10ms } }
    timeout: 100ms
  - id: ping
    match: { path: /ping }
    respond: { status: 200, body: pong }
`);
  t.after(() => gw.close());

  const res = await send(`${gw.url}/hooks/a`, { method: 'POST', body: '{}' });
  assert.equal(res.status, 202, 'the timed-out direct delivery is queued and acknowledged');
  const { id } = res.json<{ id: string }>();
  assert.equal(held.length, 1, 'the direct delivery reached the target and was held');
  await until(() => attempts.includes(1), 'the queued job delivered by the deliverer');
  const queue = gw.runtime.defer.queue!;
  await until(async () => (await queue.get(id))?.state === 'done', 'the job done');

  const later = await send(`${gw.url}/ping`);
  assert.equal(later.status, 200, 'the gateway still answers');
  assert.equal(later.text, 'pong');
});

test('issue 11: a deadline\'s reason is always a GatewayError', async () => {
  const timed = new Deadline().within(1, 'route');
  await until(() => timed.aborted, 'the deadline to pass');
  assert.ok(timed.signal.reason instanceof GatewayError);
  assert.equal((timed.signal.reason as GatewayError).code, 'TARGET_TIMEOUT');

  const left = new Deadline().within(60_000, 'route');
  left.closed(false);
  assert.equal((left.signal.reason as GatewayError).code, 'CLIENT_CLOSED');
  left.abort(new GatewayError('SHUTTING_DOWN'));
  assert.equal((left.signal.reason as GatewayError).code, 'CLIENT_CLOSED', 'the first reason wins');

  const done = new Deadline().within(60_000, 'route');
  done.closed(true);
  assert.equal(done.aborted, false, 'a complete answer aborts nothing');
});

test('issue 11: classify() survives reasons that are not GatewayErrors (defence in depth)', async (t) => {
  const { compiled } = loadConfigText('pools: { p: { targets: [http://127.0.0.1:9] } }', 'test.yaml', { env: {} });
  const registry = new Registry();
  t.after(() => registry.destroy());
  const target = registry.provision(compiled.pools).get('p')!.targets[0];
  const timeout = classify(new DOMException('signal timed out', 'TimeoutError'), target, true, false);
  assert.equal(timeout.code, 'TARGET_TIMEOUT');
  assert.equal(timeout.phase, 'headers');
  assert.equal(classify(new DOMException('aborted', 'AbortError'), target, true, false).code, 'CLIENT_CLOSED');
  assert.equal(classify(Object.assign(new Error('odd'), { code: 42 }), target, true, false).code, 'TARGET_UNREACHABLE');
});

test('issue 11: the earliest deadline wins; a child deadline ends with its parent, or by its own time', async () => {
  const both = new Deadline().within(60_000, 'route').within(1, 'batch').within(30_000, 'later');
  await until(() => both.aborted, 'the earlier deadline to pass');
  assert.equal((both.signal.reason as GatewayError).message, 'batch deadline of 1 ms passed');

  const batch = new Deadline();
  const item = batch.child();
  const finished = batch.child();
  finished.clear(); // its work is done: it no longer follows the batch
  batch.abort(new GatewayError('CLIENT_CLOSED'));
  assert.equal(item.signal.reason, batch.signal.reason, 'the item ends with the batch, for the same reason');
  assert.equal(finished.aborted, false);

  const own = new Deadline().child().within(1, 'item');
  await until(() => own.aborted, 'the item deadline to pass');
  assert.equal((own.signal.reason as GatewayError).message, 'item deadline of 1 ms passed');
});

test('issue 11: a foreign AbortSignal is followed with a GatewayError reason', async () => {
  const timeout = Deadline.follow(AbortSignal.timeout(1));
  await until(() => timeout.aborted, 'the foreign timeout');
  assert.equal((timeout.signal.reason as GatewayError).code, 'TARGET_TIMEOUT');
  const c = new AbortController();
  const cancelled = Deadline.follow(c.signal);
  c.abort();
  assert.equal((cancelled.signal.reason as GatewayError).code, 'CLIENT_CLOSED');
  const kept = new AbortController();
  const passed = Deadline.follow(kept.signal);
  passed.clear();
  kept.abort();
  assert.equal(passed.aborted, false, 'a cleared deadline no longer follows');
});
