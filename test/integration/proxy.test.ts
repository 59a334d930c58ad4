/**
 * Issue #2 points 3, 4 and 8: routing, proxying (headers, paths, bodies) and access logs,
 * against real upstreams on port 0.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { deadAddress, type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

/** Echoes what arrived: method, url, raw headers and the body length. */
const echo = (name: string) =>
  startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.setHeader('content-type', 'application/json');
      res.setHeader('x-upstream', name);
      res.end(
        JSON.stringify({
          name,
          method: req.method,
          url: req.url,
          raw: req.rawHeaders,
          body: body.toString(),
        }),
      );
    });
  });

interface Echo {
  name: string;
  method: string;
  url: string;
  raw: string[];
  body: string;
}

function header(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) out.push(raw[i + 1]);
  return out;
}

describe('routing', () => {
  let a: Upstream;
  let b: Upstream;
  let c: Upstream;
  let gw: Gateway;
  before(async () => {
    [a, b, c] = await Promise.all([echo('a'), echo('b'), echo('c')]);
    gw = await startGateway(`
pools:
  a: { targets: [${a.url}] }
  b: { targets: [${b.url}] }
  c: { targets: [${c.url}] }
routes:
  - id: exact-host
    match: { host: api.example.com, path: /v1/* }
    proxy: { pool: a }
  - id: suffix-host
    match: { host: "*.example.com" }
    proxy: { pool: b }
  - id: params
    match: { path: /users/:id/posts/:post }
    proxy: { pool: c }
  - id: post-only
    match: { path: /submit, methods: [POST, PUT] }
    proxy: { pool: a }
  - id: tenant
    match: { path: /t/*, headers: { x-tenant: [acme, globex] } }
    proxy: { pool: b }
  - id: any-auth
    match: { path: /t/*, headers: { authorization: "*" } }
    proxy: { pool: c }
  - id: exact
    match: { path: /exact }
    respond: { status: 200, body: exact }
  - id: fixed-headers
    match: { path: /fixed }
    respond: { status: 201, body: fixed, headers: { x-kind: fixed, content-length: "999", x-request-id: configured } }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  test('host exact and *.suffix, ports ignored, case-insensitive', async () => {
    const r1 = await send(`${gw.url}/v1/things`, { headers: { host: 'API.example.com:8080' } });
    assert.equal(r1.headers['x-upstream'], 'a');
    const r2 = await send(`${gw.url}/v1/things`, { headers: { host: 'www.example.com' } });
    assert.equal(
      r2.headers['x-upstream'],
      'b',
      'first match is api.example.com only; others fall to the suffix route',
    );
    const r3 = await send(`${gw.url}/anything`, { headers: { host: 'deep.sub.example.com' } });
    assert.equal(r3.headers['x-upstream'], 'b');
    const r4 = await send(`${gw.url}/anything`, { headers: { host: 'example.com' } });
    assert.equal(r4.status, 404, '*.example.com does not match the apex');
  });

  test('path prefix, exact and :param segments', async () => {
    assert.equal((await send(`${gw.url}/users/42/posts/7`)).headers['x-upstream'], 'c');
    assert.equal((await send(`${gw.url}/users/42/posts`)).status, 404);
    assert.equal((await send(`${gw.url}/users//posts/7`)).status, 404, 'a parameter is never empty');
    assert.equal((await send(`${gw.url}/exact`)).text, 'exact');
    assert.equal((await send(`${gw.url}/exact/more`)).status, 404);
    assert.equal((await send(`${gw.url}/exact?x=1`)).text, 'exact', 'the query is not part of the path');
  });

  test('a respond route: its headers; the length of its body and the id of the request win over configured ones', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await send(`${gw.url}/fixed`, { headers: { 'x-request-id': `req-${i}` } });
      assert.equal(r.status, 201);
      assert.equal(r.text, 'fixed');
      assert.equal(r.headers['x-kind'], 'fixed');
      assert.equal(r.headers['content-length'], '5');
      assert.equal(r.headers['x-request-id'], `req-${i}`, 'each request its own id, not the last one');
    }
  });

  test('methods', async () => {
    assert.equal((await send(`${gw.url}/submit`, { method: 'POST', body: 'x' })).headers['x-upstream'], 'a');
    assert.equal((await send(`${gw.url}/submit`, { method: 'GET' })).status, 404);
  });

  test('header values, lists and presence; first match wins', async () => {
    assert.equal(
      (await send(`${gw.url}/t/1`, { headers: { 'x-tenant': 'globex' } })).headers['x-upstream'],
      'b',
    );
    assert.equal((await send(`${gw.url}/t/1`, { headers: { 'x-tenant': 'other' } })).status, 404);
    const both = await send(`${gw.url}/t/1`, { headers: { 'x-tenant': 'acme', authorization: 'Bearer x' } });
    assert.equal(both.headers['x-upstream'], 'b', 'the earlier route wins');
    assert.equal(
      (await send(`${gw.url}/t/1`, { headers: { authorization: 'x' } })).headers['x-upstream'],
      'c',
    );
  });

  test('no match → 404 with the JSON error body', async () => {
    const r = await send(`${gw.url}/nowhere`, { headers: { host: 'other.test' } });
    assert.equal(r.status, 404);
    assert.equal(r.headers['content-type'], 'application/json');
    const body = r.json<{ error: { code: string; message: string } }>();
    assert.equal(body.error.code, 'ROUTE_NOT_FOUND');
    assert.match(body.error.message, /GET \/nowhere/);
  });

  test('dot segments and non-origin-form targets are refused with 400', async () => {
    for (const path of ['/v1/../admin', '/v1/%2e%2e/admin', '/./x']) {
      const r = await send(`${gw.url}${path}`, { headers: { host: 'api.example.com' } });
      assert.equal(r.status, 400, path);
      assert.equal(r.json<{ error: { code: string } }>().error.code, 'BAD_REQUEST');
    }
  });
});

describe('proxying', () => {
  let up: Upstream;
  let gw: Gateway;
  before(async () => {
    up = await startUpstream((req, res) => {
      if (req.url?.startsWith('/cookies')) {
        res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/', 'c=3; HttpOnly']);
        res.setHeader('x-multi', ['one', 'two']);
        res.setHeader('connection', 'keep-alive, x-secret-hop');
        res.setHeader('x-secret-hop', 'must not pass');
        res.setHeader('keep-alive', 'timeout=5');
        res.end('cookies');
        return;
      }
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            raw: req.rawHeaders,
            body: Buffer.concat(chunks).toString(),
          }),
        );
      });
    });
    gw = await startGateway(`
pools:
  plain: { targets: [${up.url}] }
  prefixed: { targets: ["${up.url}/base/"] }
routes:
  - id: rewrite-host
    match: { path: /rewrite/* }
    proxy: { pool: plain, host: target }
  - id: literal-host
    match: { path: /literal/* }
    proxy: { pool: plain, host: internal.service }
  - id: prefixed
    match: { path: /p/* }
    proxy: { pool: prefixed, strip_prefix: /p }
  - id: joined
    match: { path: /j/* }
    proxy: { pool: prefixed }
  - id: default
    match: { path: /* }
    proxy: { pool: plain }
`);
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  test('hop-by-hop headers, and those named in Connection, are removed both ways', async () => {
    const r = await send(`${gw.url}/x`, {
      headers: [
        'Connection',
        'keep-alive, X-Drop-Me',
        'X-Drop-Me',
        'secret',
        'Keep-Alive',
        'timeout=5',
        'Proxy-Authorization',
        'Basic abc',
        'TE',
        'deflate, trailers',
        'X-Keep',
        'yes',
      ],
    });
    const e = r.json<Echo>();
    for (const h of ['x-drop-me', 'keep-alive', 'proxy-authorization', 'trailer']) {
      assert.deepEqual(header(e.raw, h), [], `${h} reached the target`);
    }
    // TE is this hop's: only `trailers` goes on, as the gateway's own (it relays trailers; issue 14).
    assert.deepEqual(header(e.raw, 'te'), ['trailers']);
    assert.deepEqual(header(e.raw, 'x-keep'), ['yes']);
    const c = await send(`${gw.url}/cookies`);
    assert.equal(c.headers['x-secret-hop'], undefined, 'a header named in the target’s Connection leaked');
    assert.equal(c.headers['keep-alive'], undefined);
  });

  test('X-Forwarded-For is appended to, X-Forwarded-Proto/Host set, Via added, request id sent', async () => {
    const r = await send(`${gw.url}/x?a=1&b=2`, {
      headers: {
        host: 'shop.test:1234',
        'x-forwarded-for': '203.0.113.9',
        via: '1.0 edge',
        'x-request-id': 'abc-123',
      },
    });
    const e = r.json<Echo>();
    assert.deepEqual(header(e.raw, 'x-forwarded-for'), ['203.0.113.9, 127.0.0.1']);
    assert.deepEqual(header(e.raw, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(header(e.raw, 'x-forwarded-host'), ['shop.test:1234']);
    assert.deepEqual(header(e.raw, 'via'), ['1.0 edge, 1.1 manifold']);
    assert.deepEqual(header(e.raw, 'host'), ['shop.test:1234'], 'Host is preserved by default');
    assert.deepEqual(header(e.raw, 'x-request-id'), ['abc-123']);
    assert.equal(r.headers['x-request-id'], 'abc-123');
    assert.equal(r.headers.via, '1.1 manifold');
    assert.equal(e.url, '/x?a=1&b=2', 'query string preserved');
  });

  test('a request id is generated when absent or unusable', async () => {
    const r = await send(`${gw.url}/x`, { headers: { 'x-request-id': 'has spaces and "quotes"' } });
    const id = r.headers['x-request-id'] as string;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(header(r.json<Echo>().raw, 'x-request-id'), [id]);
  });

  test('Host rewritten to the target or to a literal per route', async () => {
    const t = (await send(`${gw.url}/rewrite/a`, { headers: { host: 'public.test' } })).json<Echo>();
    assert.deepEqual(header(t.raw, 'host'), [`127.0.0.1:${up.port}`]);
    assert.deepEqual(header(t.raw, 'x-forwarded-host'), ['public.test']);
    const l = (await send(`${gw.url}/literal/a`, { headers: { host: 'public.test' } })).json<Echo>();
    assert.deepEqual(header(l.raw, 'host'), ['internal.service']);
  });

  test('target path prefix joined, strip_prefix applied, query kept', async () => {
    assert.equal((await send(`${gw.url}/p/users?id=7`)).json<Echo>().url, '/base/users?id=7');
    assert.equal((await send(`${gw.url}/p`)).json<Echo>().url, '/base/');
    assert.equal((await send(`${gw.url}/p?x=1`)).json<Echo>().url, '/base/?x=1');
    assert.equal((await send(`${gw.url}/j/users`)).json<Echo>().url, '/base/j/users');
  });

  test('duplicate headers and Set-Cookie lists kept intact, in order', async () => {
    const r = await send(`${gw.url}/cookies`);
    assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/', 'c=3; HttpOnly']);
    assert.deepEqual(header(r.rawHeaders, 'x-multi'), ['one', 'two']);
    const req = await send(`${gw.url}/x`, {
      headers: ['X-Dup', '1', 'X-Dup', '2', 'Cookie', 'a=1', 'Cookie', 'b=2'],
    });
    const e = req.json<Echo>();
    assert.deepEqual(header(e.raw, 'x-dup'), ['1', '2']);
    assert.deepEqual(header(e.raw, 'cookie'), ['a=1', 'b=2']);
  });

  test('request bodies pass through, with and without Content-Length', async () => {
    const fixed = await send(`${gw.url}/x`, {
      method: 'POST',
      body: 'hello world',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(fixed.json<Echo>().body, 'hello world');
    assert.deepEqual(header(fixed.json<Echo>().raw, 'content-length'), ['11']);
    const chunked = await send(`${gw.url}/x`, {
      method: 'PUT',
      body: 'streamed',
      headers: { 'transfer-encoding': 'chunked' },
    });
    assert.equal(chunked.json<Echo>().body, 'streamed');
    assert.equal(chunked.json<Echo>().method, 'PUT');
  });

  test('one access-log line per request with id, route, target, status, bytes and duration', async () => {
    const r = await send(`${gw.url}/x`, { headers: { 'x-request-id': 'log-me-1' } });
    const line = await until(() => gw.logs.access().find((l) => l.req_id === 'log-me-1'), 'access log line');
    assert.equal(line.route, 'default');
    assert.equal(line.target, `127.0.0.1:${up.port}`);
    assert.equal(line.status, 200);
    assert.equal(line.bytes, r.body.length);
    assert.equal(typeof line.duration_ms, 'number');
    assert.equal(gw.logs.access().filter((l) => l.req_id === 'log-me-1').length, 1);
  });
});

describe('headers prepared once per request (issue 11 item 2)', () => {
  test('an attempt on another target gets that target\'s Host; the other prepared headers go whole', async (t) => {
    const up = await echo('second');
    t.after(() => up.close());
    const dead = await deadAddress();
    const gw = await startGateway(`
pools:
  two: { targets: ["${dead}", "${up.url}"], selector: round-robin }
routes:
  - match: { path: /* }
    proxy: { pool: two, host: target, strategy: failover, order: listed, max_attempts: 2 }
`);
    t.after(() => gw.close());
    const r = await send(`${gw.url}/h`, { headers: { host: 'public.test', 'x-keep': 'yes' } });
    assert.equal(r.status, 200);
    const e = r.json<Echo>();
    assert.deepEqual(header(e.raw, 'host'), [new URL(up.url).host], 'the second target\'s own Host');
    assert.deepEqual(header(e.raw, 'x-keep'), ['yes']);
    assert.deepEqual(header(e.raw, 'x-forwarded-host'), ['public.test']);
    assert.equal(header(e.raw, 'traceparent').length, 1);
    // The refused connect was an attempt too: two in the access line, the second on the echo.
    const line = await until(() => gw.logs.access().find((l) => l.route !== undefined && l.status === 200));
    const attempts = line.attempts as Array<{ target: string; outcome: string }>;
    assert.equal(attempts.length, 2);
    assert.equal(attempts[0]!.outcome, 'failed');
    assert.equal(attempts[1]!.outcome, 'accepted');
  });
});
