/**
 * Issue 15, item 4: a duplicate Host header (or an invalid one: `Host: a b`, `Host: a@b`) is
 * refused 400 at the listener (RFC 9112 §3.2) and never reaches a target, on a proxy route
 * and on a defer route (refused before anything is enqueued). An error undici raises while
 * building the outbound request is the request's fault (400 REQUEST_NOT_FORWARDABLE): not
 * TARGET_UNREACHABLE, not retried on other targets, not counted against passive health.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { loadConfigText } from '../../src/config/load.ts';
import { AttemptError, forward } from '../../src/proxy/forward.ts';
import { recordOutcomes } from '../../src/proxy/outcomes.ts';
import { Registry } from '../../src/upstream/registry.ts';
import { type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { sendRaw } from '../helpers/http.ts';

const BAD_HOSTS = [
  'Host: a\r\nHost: b\r\n',
  'Host: a\r\nhost: a\r\n',
  'Host: a b\r\n',
  'Host: a@b\r\n',
];

const statusOf = (raw: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
const bodyOf = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };

describe('issue 15: Host at the listener', () => {
  let ups: Upstream[];
  let gw: Gateway;
  let dir: string;
  before(async () => {
    ups = await Promise.all([0, 1, 2].map(() => startUpstream()));
    dir = mkdtempSync(join(tmpdir(), 'manifold-issue15-host-'));
    gw = await startGateway(`
log: { level: warn, access: false }
queue: { driver: sqlite, path: ${join(dir, 'q.db')} }
pools:
  p:
    targets: [${ups.map((u) => u.url).join(', ')}]
    passive: { failures: 2 }
routes:
  - { match: { path: /defer/* }, defer: { pool: p } }
  - { match: { path: /* }, proxy: { pool: p, strategy: failover } }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all(ups.map((u) => u.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('duplicate or invalid Host: 400 on proxy and defer routes; no target sees it, nothing is enqueued', async () => {
    for (const path of ['/x', '/defer/x']) {
      for (const host of BAD_HOSTS) {
        const raw = await sendRaw(gw.port, `GET ${path} HTTP/1.1\r\n${host}Connection: close\r\n\r\n`);
        assert.equal(statusOf(raw), 400, `${path} ${JSON.stringify(host)}: ${raw}`);
        assert.equal(bodyOf(raw).error.code, 'BAD_REQUEST');
      }
    }
    assert.equal(ups.reduce((n, u) => n + u.requests.length, 0), 0);
    // A good request still works on both; then the queue holds only that job.
    const ok = await sendRaw(gw.port, 'GET /x HTTP/1.1\r\nHost: a:80\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(ok), 200, ok);
    const deferred = await sendRaw(gw.port, 'GET /defer/x HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(deferred), 202, deferred);
    const db = new DatabaseSync(join(dir, 'q.db'), { readOnly: true });
    try {
      assert.equal((db.prepare('SELECT count(*) AS n FROM defer_jobs').get() as { n: number }).n, 1);
    } finally {
      db.close();
    }
    await until(() => ups.reduce((n, u) => n + u.requests.length, 0) === 2, 'the good requests delivered');
  });
});

describe('issue 15: an outbound request undici refuses to build', () => {
  let up: Upstream;
  let registry: Registry;
  before(async () => {
    up = await startUpstream();
  });
  after(async () => {
    await registry.destroy();
    await up.close();
  });

  test('is REQUEST_NOT_FORWARDABLE in the request phase and never a target failure', async () => {
    const { compiled } = loadConfigText(
      `pools: { p: { targets: [${up.url}], passive: { failures: 1 } } }`,
      'test.yaml',
      { env: {} },
    );
    registry = new Registry();
    const target = registry.provision(compiled.pools).get('p')!.targets[0];
    const send = recordOutcomes(forward);
    for (let i = 0; i < 5; i++) {
      const err = await send(
        target,
        {
          method: 'GET',
          path: '/',
          headers: ['host', 'a', 'host', 'b'],
          body: null,
          headersTimeoutMs: 5000,
          idleTimeoutMs: 5000,
        },
        new AbortController().signal,
      ).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof AttemptError, String(err));
      assert.equal(err.code, 'REQUEST_NOT_FORWARDABLE');
      assert.equal(err.status, 400);
      assert.equal(err.phase, 'request');
    }
    assert.equal(target.state.failures, 0);
    assert.equal(target.available(), true);
    assert.equal(up.requests.length, 0);
  });
});
