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
