/**
 * Issue 3: the admin API's edges — bearer token, the refusal of a non-loopback bind without
 * one, bad bodies (400 naming the field), unknown pools and targets (404), refused changes
 * (409, nothing changes) — and stats that match the traffic sent, summed across workers.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deadAddress, spawnCli, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { MODES, type ManagedGateway, startManaged } from './admin-gateway.ts';

interface ErrorBody {
  error: { code: string; message: string };
}

describe('admin API: token, validation, errors (one process)', () => {
  let a: Upstream;
  let gw: ManagedGateway;
  const auth = { authorization: 'Bearer s3cret' };
  before(async () => {
    a = await startUpstream((_req, res) => res.end('a'));
    gw = await startManaged(
      `
log: { level: warn, access: false }
admin: { token: s3cret }
pools:
  default: { targets: [${a.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: default } }
`,
      0,
    );
  });
  after(async () => {
    await gw.close();
    await a.close();
  });

  test('calls without the token, or with a wrong one, get 401', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 's3cret' }]) {
      for (const [method, path] of [
        ['GET', '/pools'],
        ['GET', '/stats'],
        ['POST', '/config/reload'],
        ['DELETE', '/pools/default'],
      ]) {
        const r = await gw.admin(method, path, undefined, headers);
        assert.equal(r.status, 401, `${method} ${path}`);
        assert.equal(r.json<ErrorBody>().error.code, 'UNAUTHORIZED');
        assert.equal(r.headers['www-authenticate'], 'Bearer');
      }
    }
    assert.equal((await gw.admin('GET', '/pools', undefined, auth)).status, 200);
  });

  test('bad bodies: 400 naming the field', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /^body\.url: is required$/],
      [{ url: 'ftp://x' }, /^body\.url: must be an http\(s\) URL/],
      [{ url: 'http://127.0.0.1:1?q=1' }, /^body\.url: /],
      [{ url: 'http://127.0.0.1:1', weight: 0 }, /^body\.weight: must be >= 1$/],
      [{ url: 'http://127.0.0.1:1', weight: 'heavy' }, /^body\.weight: must be integer$/],
      [{ url: 'http://127.0.0.1:1', colour: 'red' }, /^body\.colour: unknown field$/],
    ];
    for (const [body, message] of cases) {
      const r = await gw.admin('POST', '/pools/default/targets', body, auth);
      assert.equal(r.status, 400, JSON.stringify(body));
      const e = r.json<ErrorBody>().error;
      assert.equal(e.code, 'INVALID_BODY');
      assert.match(e.message, message);
    }
    const bad = await send(`${gw.adminUrl}/pools/default/targets`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{"url":',
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json<ErrorBody>().error.code, 'INVALID_BODY');
    const pool = await gw.admin('POST', '/pools', { name: 'p', selector: 'fastest' }, auth);
    assert.equal(pool.status, 400);
    assert.match(
      pool.json<ErrorBody>().error.message,
      /^body\.selector: must be one of round-robin, weighted/,
    );
    const weight = await gw.admin(
      'PATCH',
      `/pools/default/targets/127.0.0.1:${a.port}`,
      { weight: -1 },
      auth,
    );
    assert.equal(weight.status, 400);
    assert.match(weight.json<ErrorBody>().error.message, /^body\.weight: /);
  });

  test('unknown pools, targets and endpoints: 404', async () => {
    const cases: Array<[string, string, unknown, RegExp]> = [
      ['GET', '/pools/nope', undefined, /no pool "nope"/],
      ['POST', '/pools/nope/targets', { url: 'http://127.0.0.1:1' }, /no pool "nope"/],
      ['DELETE', '/pools/default/targets/127.0.0.1:1', undefined, /has no target "127\.0\.0\.1:1"/],
      ['PATCH', '/pools/default/targets/127.0.0.1:1', { weight: 2 }, /has no target/],
      ['DELETE', '/servers/127.0.0.1/1', undefined, /has no target at 127\.0\.0\.1:1/],
      ['GET', '/nothing/here', undefined, /no admin endpoint GET \/nothing\/here/],
    ];
    for (const [method, path, body, message] of cases) {
      const r = await gw.admin(method, path, body, auth);
      assert.equal(r.status, 404, `${method} ${path}`);
      assert.equal(r.json<ErrorBody>().error.code, 'NOT_FOUND');
      assert.match(r.json<ErrorBody>().error.message, message);
    }
  });

  test('a change that would leave the config invalid is refused and changes nothing', async () => {
    const before = (await gw.admin('GET', '/pools', undefined, auth)).text;
    const dup = await gw.admin('POST', '/pools/default/targets', { url: a.url }, auth);
    assert.equal(dup.status, 409);
    assert.match(dup.json<ErrorBody>().error.message, /already has a target/);
    const used = await gw.admin('DELETE', '/pools/default', undefined, auth);
    assert.equal(used.status, 409);
    assert.match(used.json<ErrorBody>().error.message, /routes\[0\]\.proxy\.pool: unknown pool "default"/);
    const exists = await gw.admin('POST', '/pools', { name: 'default' }, auth);
    assert.equal(exists.status, 409);
    const badHealth = await gw.admin(
      'POST',
      '/pools',
      { name: 'h', targets: [a.url], health: { interval: '1ms' } },
      auth,
    );
    assert.equal(badHealth.status, 409);
    assert.match(
      badHealth.json<ErrorBody>().error.message,
      /pools\.h\.health\.interval: must be at least 10ms/,
    );
    const stripped = (s: string) => s.replace(/"latency_ms":\{[^}]*\}|"requests":\d+/g, '');
    assert.equal(stripped((await gw.admin('GET', '/pools', undefined, auth)).text), stripped(before));
    assert.equal((await gw.get('/')).text, 'a');
  });
});

describe('admin API bind', () => {
  test('a non-loopback admin address without a token is refused at config time', async () => {
    const file = join(tmpdir(), `manifold-admin-bind-${process.pid}.yaml`);
    writeFileSync(file, 'admin: { host: 0.0.0.0 }\npools: {}\nroutes: []\n');
    const cli = spawnCli(['validate', '--config', file]);
    assert.equal(await cli.exited, 1);
    assert.match(
      cli.stderr,
      /admin\.host: binding the admin API to non-loopback "0\.0\.0\.0" requires admin\.token/,
    );
  });
});

for (const mode of MODES) {
  describe(`stats (${mode.name})`, () => {
    let a: Upstream;
    let b: Upstream;
    let gw: ManagedGateway;
    let dead: string;
    before(async () => {
      [a, b] = await Promise.all([
        startUpstream((_req, res) => res.end('a')),
        startUpstream((_req, res) => setTimeout(() => res.end('b'), 20)),
      ]);
      dead = await deadAddress();
      gw = await startManaged(
        `
log: { level: warn, access: false }
pools:
  good: { targets: [${a.url}, ${b.url}] }
  bad: { targets: [${dead}] }
routes:
  - { match: { path: /bad }, proxy: { pool: bad } }
  - { match: { path: /* }, proxy: { pool: good } }
`,
        mode.workers,
      );
    });
    after(async () => {
      await gw.close();
      await Promise.all([a.close(), b.close()]);
    });

    test('GET /stats and /stats/detail match the traffic sent', async () => {
      for (let i = 0; i < 30; i++) assert.equal((await gw.get('/ok')).status, 200);
      for (let i = 0; i < 5; i++) assert.equal((await gw.get('/bad')).status, 502);
      const stats = await until(async () => {
        const s = (await gw.admin('GET', '/stats')).json<{
          downstream: { success: number; failed: number };
          upstream: { success: number; failed: number };
          workers: number;
        }>();
        return s.downstream.success + s.downstream.failed === 35 ? s : null;
      }, 'all 35 answers counted');
      assert.deepEqual(stats.downstream, { success: 30, failed: 5 });
      assert.deepEqual(stats.upstream, { success: 30, failed: 5 });
      assert.equal(stats.workers, Math.max(1, mode.workers));

      // Weldr's shape (issue 12): a bare array.
      const detail = (await gw.admin('GET', '/stats/detail')).json<
        Array<{
          pool: string;
          id: string;
          url: string;
          state: string;
          requests: number;
          failures: number;
          inflight: number;
          latency_ms: { p50: number | null; p99: number | null };
        }>
      >();
      const byId = new Map(detail.map((t) => [`${t.pool}/${t.url}`, t]));
      const ta = byId.get(`good/${a.url}`)!;
      const tb = byId.get(`good/${b.url}`)!;
      const td = byId.get(`bad/${dead}`)!;
      assert.equal(ta.requests + tb.requests, 30);
      if (mode.workers === 0) assert.deepEqual([ta.requests, tb.requests], [15, 15]);
      assert.deepEqual([ta.failures, tb.failures, ta.inflight, tb.inflight], [0, 0, 0, 0]);
      assert.deepEqual([td.requests, td.failures, td.state], [5, 5, 'up']);
      // b answers after 20 ms: its latency shows it, a's does not.
      assert.ok(tb.latency_ms.p50! >= 18 && tb.latency_ms.p99! >= tb.latency_ms.p50!, JSON.stringify(tb));
      assert.ok(ta.latency_ms.p50! < tb.latency_ms.p50!, JSON.stringify([ta, tb]));
    });
  });
}
