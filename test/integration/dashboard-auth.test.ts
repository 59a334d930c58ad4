/**
 * Issue 7: how a browser signs in to the dashboard. With `admin.token` set, GET /dashboard
 * answers a login form (401), POST /dashboard/login trades the token for an HttpOnly cookie —
 * derived from the token, never the token, since browsers send it to the data port of the
 * same host too — that only the routes under /dashboard accept (the page, its data, and the
 * admin pool/queue calls under /dashboard/api); a change made with it also needs the page's
 * `x-manifold-dashboard: 1` header (CSRF). Bearer clients are unaffected; no token, no login.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream } from '../helpers/index.ts';
import { type Reply, send } from '../helpers/http.ts';
import { type ManagedGateway, startManaged } from './admin-gateway.ts';

interface ErrorBody {
  error: { code: string; message: string };
}

// A token a cookie could not hold as is (the cookie holds an HMAC of it anyway).
const TOKEN = 's3cr;et =x/+';
const yaml = (a: Upstream, token: string | null) => `
log: { level: warn, access: false }
admin: { token: ${token === null ? 'null' : JSON.stringify(token)} }
pools:
  default: { targets: [${a.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: default } }
`;

const form = (fields: Record<string, string>) => ({
  'content-type': 'application/x-www-form-urlencoded',
  body: new URLSearchParams(fields).toString(),
});

function assertPageHeaders(r: Reply, type: string) {
  assert.equal(r.headers['content-type'], type);
  assert.equal(r.headers['cache-control'], 'no-store');
  const csp = String(r.headers['content-security-policy']);
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
}

function assertLoginForm(r: Reply) {
  assert.equal(r.status, 401);
  assertPageHeaders(r, 'text/html; charset=utf-8');
  assert.match(r.text, /<form method="post" action="\/dashboard\/login">/);
  assert.match(r.text, /<input id="token" name="token" type="password"/);
  assert.doesNotMatch(r.text, /<script/, 'the login form runs no script');
}

describe('dashboard sign-in with admin.token set', () => {
  let a: Upstream;
  let gw: ManagedGateway;
  let cookie: string;
  const target = () => `/dashboard/api/pools/default/targets/127.0.0.1:${a.port}`;
  const call = (method: string, path: string, headers: Record<string, string>, body?: unknown) =>
    send(`${gw.adminUrl}${path}`, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  before(async () => {
    a = await startUpstream((_req, res) => res.end('a'));
    gw = await startManaged(yaml(a, TOKEN), 0);
  });
  after(async () => {
    await gw.close();
    await a.close();
  });

  test('GET /dashboard without a session answers the login form; only it and its css are open', async () => {
    const anonymous: Array<Record<string, string>> = [
      {},
      { cookie: 'manifold_admin=wrong' },
      { authorization: 'Bearer wrong' },
    ];
    for (const headers of anonymous) {
      assertLoginForm(await call('GET', '/dashboard?x=1', headers));
    }
    const css = await call('GET', '/dashboard/dashboard.css', {});
    assert.equal(css.status, 200);
    assertPageHeaders(css, 'text/css; charset=utf-8');
    for (const path of ['/dashboard/dashboard.js', '/dashboard/data', '/dashboard/nothing', '/pools']) {
      const r = await call('GET', path, {});
      assert.equal(r.status, 401, path);
      assert.equal(r.json<ErrorBody>().error.code, 'UNAUTHORIZED');
    }
  });

  test('a wrong token gets the form again, with a message and no cookie', async () => {
    const wrong: Array<Record<string, string>> = [
      { token: 'wrong' },
      { token: `${TOKEN}x` },
      { other: TOKEN },
    ];
    for (const fields of wrong) {
      const { body, ...headers } = form(fields);
      const r = await send(`${gw.adminUrl}/dashboard/login`, { method: 'POST', headers, body });
      assertLoginForm(r);
      assert.match(r.text, /class="login-error" role="alert">That token is not valid\./);
      assert.equal(r.headers['set-cookie'], undefined);
    }
  });

  test('the right token sets an HttpOnly, SameSite=Strict cookie and redirects to the page', async () => {
    const { body, ...headers } = form({ token: TOKEN });
    const r = await send(`${gw.adminUrl}/dashboard/login`, { method: 'POST', headers, body });
    assert.equal(r.status, 303);
    assert.equal(r.headers.location, '/dashboard');
    const set = r.headers['set-cookie'] ?? [];
    assert.equal(set.length, 1);
    assert.match(set[0], /^manifold_admin=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/dashboard$/);
    cookie = set[0].split(';')[0];
    assert.ok(
      !cookie.includes(encodeURIComponent(TOKEN)) && !cookie.includes('s3cr'),
      'the cookie is not the token',
    );

    const page = await call('GET', '/dashboard', { cookie });
    assert.equal(page.status, 200);
    assertPageHeaders(page, 'text/html; charset=utf-8');
    assert.match(page.text, /<script type="module" src="\/dashboard\/dashboard\.js"><\/script>/);
    assert.doesNotMatch(page.text, /<script>|<script(?![^>]*\ssrc=)[^>]*>/, 'no inline script');
    const js = await call('GET', '/dashboard/dashboard.js', { cookie: `other=1; ${cookie}` });
    assert.equal(js.status, 200);
    assertPageHeaders(js, 'text/javascript; charset=utf-8');
    assert.match(js.text, /x-manifold-dashboard/);
  });

  test('the cookie works under /dashboard only; a change needs x-manifold-dashboard: 1 as well', async () => {
    const pools = await call('GET', '/dashboard/api/pools', { cookie });
    assert.equal(pools.status, 200);
    assert.equal(pools.json<{ pools: Array<{ name: string }> }>().pools[0].name, 'default');
    assert.equal((await call('GET', '/dashboard/data', { cookie })).status, 200);
    for (const path of ['/pools', '/stats', '/metrics']) {
      const r = await call('GET', path, { cookie });
      assert.equal(r.status, 401, `${path} takes no cookie`);
    }
    assert.equal((await call('POST', '/config/reload', { cookie, 'x-manifold-dashboard': '1' })).status, 401);

    for (const [method, path, body] of [
      ['PATCH', target(), { weight: 2 }],
      ['POST', '/dashboard/api/queue/dead/retry', undefined],
      ['DELETE', target(), undefined],
    ] as const) {
      const without: Array<Record<string, string>> = [{ cookie }, { cookie, 'x-manifold-dashboard': '0' }];
      for (const headers of without) {
        const r = await call(method, path, headers, body);
        assert.equal(r.status, 403, `${method} ${path}`);
        const e = r.json<ErrorBody>().error;
        assert.equal(e.code, 'FORBIDDEN');
        assert.match(e.message, /x-manifold-dashboard: 1/);
      }
    }
    const weight = (r: Reply) => r.json<{ target: { weight: number } }>().target.weight;
    const patched = await call('PATCH', target(), { cookie, 'x-manifold-dashboard': '1' }, { weight: 3 });
    assert.equal(patched.status, 200, patched.text);
    assert.equal(weight(patched), 3);
    assert.equal((await gw.get('/')).text, 'a', 'the target still serves');
  });

  test('Bearer clients need no extra header; a wrong cookie is 401', async () => {
    const bearer = { authorization: `Bearer ${TOKEN}` };
    const r = await call('PATCH', target(), bearer, { weight: 1 });
    assert.equal(r.status, 200, r.text);
    assert.equal((await call('GET', '/dashboard', bearer)).status, 200);
    const raw = `manifold_admin=${encodeURIComponent(TOKEN)}`;
    for (const c of [
      'manifold_admin=',
      'manifold_admin=s3cr',
      `x${cookie}`,
      'manifold_admin=%E0%A4%A',
      raw,
    ]) {
      const bad = await call('GET', '/dashboard/api/pools', { cookie: c });
      assert.equal(bad.status, 401, c);
      assert.equal(bad.json<ErrorBody>().error.code, 'UNAUTHORIZED');
    }
  });

  test('a reload that rotates the token signs the browser out', async () => {
    gw.write(yaml(a, 'rotated'));
    const reload = await call('POST', '/config/reload', { authorization: `Bearer ${TOKEN}` });
    assert.equal(reload.status, 200, reload.text);
    assert.equal((await call('GET', '/dashboard/api/pools', { cookie })).status, 401);
    assertLoginForm(await call('GET', '/dashboard', { cookie }));
    assert.equal((await call('GET', '/pools', { authorization: 'Bearer rotated' })).status, 200);
  });
});

describe('dashboard without admin.token', () => {
  let a: Upstream;
  let gw: ManagedGateway;
  before(async () => {
    a = await startUpstream((_req, res) => res.end('a'));
    gw = await startManaged(yaml(a, null), 0);
  });
  after(async () => {
    await gw.close();
    await a.close();
  });

  test('everything is open as before: the page, the API, changes without the header', async () => {
    const page = await send(`${gw.adminUrl}/dashboard`);
    assert.equal(page.status, 200);
    assert.match(page.text, /<script type="module" src="\/dashboard\/dashboard\.js">/);
    assert.equal((await send(`${gw.adminUrl}/dashboard/dashboard.js`)).status, 200);
    assert.equal((await gw.admin('GET', '/pools')).status, 200);
    const r = await gw.admin('PATCH', `/pools/default/targets/127.0.0.1:${a.port}`, { weight: 2 });
    assert.equal(r.status, 200, r.text);
    const { body, ...headers } = form({ token: 'anything' });
    const login = await send(`${gw.adminUrl}/dashboard/login`, { method: 'POST', headers, body });
    assert.equal(login.status, 303);
    assert.equal(login.headers.location, '/dashboard');
    assert.equal(login.headers['set-cookie'], undefined);
  });
});
