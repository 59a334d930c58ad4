/**
 * Issue 15, item 6 (part): readiness and a second signal. While a SIGTERM drain runs, the
 * admin API stays up and `GET /ready` answers 503 `NOT_READY` (before: the admin API closed
 * first, and there was no /ready at all); a second SIGTERM during the drain exits at once
 * (before: ignored, the process waited for the whole grace period).
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { test } from 'node:test';
import { startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { startManaged } from './admin-gateway.ts';

const config = (url: string) => `
pools:
  slow: { targets: [${url}] }
routes:
  - match: {}
    proxy: { pool: slow }
    timeout: 60s
shutdown: { grace: 30s }
`;

test('GET /ready: 200, then 503 NOT_READY as soon as the drain starts; a second SIGTERM exits now', async (t) => {
  const held: ServerResponse[] = [];
  const target = await startUpstream((_req, res) => held.push(res));
  t.after(() => target.close());
  // With an admin token: a probe carries none, and /ready needs none (everything else does).
  const gw = await startManaged(config(target.url), 0, { MANIFOLD_ADMIN__TOKEN: 'secret' });
  t.after(() => gw.cli.kill('SIGKILL'));

  const ready = await gw.admin('GET', '/ready');
  assert.equal(ready.status, 200);
  assert.deepEqual(JSON.parse(ready.body.toString()), { ready: true });
  assert.equal((await gw.admin('GET', '/pools')).status, 401);

  // One request in flight keeps the drain going.
  const inflight = send(`${gw.url}/slow`).catch((err: Error) => err);
  await until(() => held.length === 1, 'the request to reach the target');
  gw.cli.kill('SIGTERM');
  await until(() => gw.cli.logs().some((l) => l.msg === 'draining'), 'the drain to start');
  const draining = await gw.admin('GET', '/ready');
  assert.equal(draining.status, 503);
  assert.equal(JSON.parse(draining.body.toString()).error.code, 'NOT_READY');

  gw.cli.kill('SIGTERM');
  assert.equal(await gw.cli.exited, 1);
  assert.ok(gw.cli.logs().some((l) => l.msg === 'second signal during the drain: exiting at once'));
  await inflight;
  for (const res of held) res.destroy();
});
