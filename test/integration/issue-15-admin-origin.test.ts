/**
 * Issue 15, item 2: the admin API answers only requests whose Host is its own address (the
 * loopback spellings for a loopback bind) or a name in `admin.allowed_hosts` — a DNS-rebinding
 * page (`Host: evil.example:PORT`) gets 403 FORBIDDEN_HOST — and refuses every change from a
 * foreign `Origin` (a cross-site simple request) with 403 FORBIDDEN_ORIGIN, as Caddy does.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream } from '../helpers/index.ts';
import { type ManagedGateway, startManaged } from './admin-gateway.ts';

interface ErrorBody {
  error: { code: string; message: string };
}

describe('issue 15: admin Host and Origin', { timeout: 60_000 }, () => {
  let a: Upstream;
  let gw: ManagedGateway;
  let port: string;
  before(async () => {
    a = await startUpstream();
    gw = await startManaged(
      `
log: { level: warn, access: false }
admin: { allowed_hosts: [admin.example, "ops.example:1234"] }
pools:
  p: { targets: [${a.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: p } }
`,
      0,
    );
    port = new URL(gw.adminUrl).port;
  });
  after(async () => {
    await gw.close();
    await a.close();
  });

  test('a foreign Host is refused on every call; the admin address and allowed_hosts answer', async () => {
    for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.2:${port}`, `localhost:1`, `ops.example:${port}`]) {
      for (const [method, path] of [
        ['GET', '/pools'],
        ['POST', '/config/reload'],
      ]) {
        const r = await gw.admin(method, path, undefined, { host });
        assert.equal(r.status, 403, `${host} ${method} ${path}: ${r.text}`);
        assert.equal(r.json<ErrorBody>().error.code, 'FORBIDDEN_HOST');
      }
    }
    // The DNS-rebinding change of the issue lands nowhere.
    const add = await gw.admin('POST', '/pools/p/targets', { url: 'http://169.254.169.254' }, { host: `evil.example:${port}` });
    assert.equal(add.status, 403);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `admin.example:${port}`, 'admin.example', 'ops.example:1234']) {
      const r = await gw.admin('GET', '/pools', undefined, { host });
      assert.equal(r.status, 200, `${host}: ${r.text}`);
    }
  });

  test('a change from a foreign Origin is refused; reads and same-origin changes are not', async () => {
    for (const origin of ['http://evil.example', `http://evil.example:${port}`, 'null', `https://127.0.0.1:1`]) {
      for (const [method, path, body] of [
        ['POST', '/config/reload', undefined],
        ['POST', '/pools/p/targets', { url: 'http://169.254.169.254' }],
        ['DELETE', '/pools/p', undefined],
        ['PATCH', `/pools/p/targets/127.0.0.1:${a.port}`, { drain: true }],
      ] as const) {
        const r = await gw.admin(method, path, body, { origin, 'content-type': 'text/plain' });
        assert.equal(r.status, 403, `${origin} ${method} ${path}: ${r.text}`);
        assert.equal(r.json<ErrorBody>().error.code, 'FORBIDDEN_ORIGIN');
      }
    }
    const pools = (await gw.admin('GET', '/pools', undefined, { origin: 'http://evil.example' })).json<{
      pools: Array<{ name: string; targets: unknown[] }>;
    }>().pools;
    assert.deepEqual(pools.map((p) => [p.name, p.targets.length]), [['p', 1]]);
    for (const origin of [`http://127.0.0.1:${port}`, `http://localhost:${port}`, `http://admin.example`]) {
      const r = await gw.admin('POST', '/config/reload', undefined, { origin });
      assert.equal(r.status, 200, `${origin}: ${r.text}`);
    }
    // No Origin (curl, scripts): allowed.
    assert.equal((await gw.admin('POST', '/config/reload')).status, 200);
  });
});
