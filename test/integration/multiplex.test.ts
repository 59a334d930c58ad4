/**
 * Issue 5 end to end: `POST /multiplex` as a route action of the real gateway (config → snapshot
 * → pipeline → engine), against real local upstreams. The engine's finer cases (redirects,
 * decoding, byte limits, TLS, DNS spread) are in multiplex-engine.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadConfigText } from '../../src/config/load.ts';
import type { BatchResult, ItemResult } from '../../src/multiplex/types.ts';
import { failed, fixedAnswer, ok } from '../helpers/multiplex.ts';
import {
  deadAddress,
  type Gateway,
  startGateway,
  startUpstream,
  type Upstream,
  until,
} from '../helpers/index.ts';
import { type Reply, send } from '../helpers/http.ts';

type ErrorReply = { error: { code: string; message: string } };


// ---------------------------------------------------------------- upstream

/** Requests parked at /hold until `release()`, by query string. */
const held = new Map<string, ServerResponse>();
/** /hold requests whose connection closed before they were answered. */
const abandoned: string[] = [];

function release(): void {
  for (const [key, res] of held) {
    held.delete(key);
    res.end('late');
  }
}

let up: Upstream;
let garbage: Server;
let garbagePort = 0;
let dead = '';
let gw: Gateway;

function yaml(extra = ''): string {
  return `
log: { level: info }
routes:
  - id: batch
    match: { path: /multiplex, methods: [POST] }
    multiplex:
      allow: [127.0.0.0/8]
      max_requests: 5
      max_timeout: 5s
      max_body_bytes: 4KiB
      max_connections_per_origin: 2${extra}
  - id: short
    match: { path: /short/multiplex, methods: [POST] }
    multiplex: { allow: [127.0.0.0/8] }
    timeout: 300ms
  - id: guarded
    match: { path: /guarded/multiplex, methods: [POST], headers: { x-api-key: s3cret } }
    multiplex: { allow: [127.0.0.0/8] }
  - id: public
    match: { path: /public/multiplex, methods: [POST] }
    multiplex: {}
  - id: by-name
    match: { path: /by-name/multiplex, methods: [POST] }
    multiplex: { allow: [localhost] }
`;
}

before(async () => {
  up = await startUpstream((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (fixedAnswer(url.pathname, body, res)) return;
      switch (url.pathname) {
        case '/echo':
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ method: req.method, headers: req.headers, body: body.toString('base64') }));
          return;
        case '/hold':
          held.set(url.search, res);
          res.on('close', () => {
            held.delete(url.search);
            if (!res.writableFinished) abandoned.push(url.search);
          });
          return;
        default:
          res.writeHead(500).end();
      }
    });
  });
  // Answers anything with bytes that are not HTTP.
  garbage = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end('HELLO THERE\r\n\r\n'));
  });
  garbage.listen(0, '127.0.0.1');
  await once(garbage, 'listening');
  garbagePort = (garbage.address() as { port: number }).port;
  dead = await deadAddress();
  gw = await startGateway(yaml());
});

after(async () => {
  release();
  await gw?.close();
  await up?.close();
  garbage?.close();
});

function batch(body: unknown, path = '/multiplex', headers: Record<string, string> = {}): Promise<Reply> {
  return send(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function results(body: unknown, path?: string): Promise<ItemResult[]> {
  const r = await batch(body, path);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['content-type'], 'application/json');
  return r.json<BatchResult>().responses;
}

// ---------------------------------------------------------------- tests

describe('POST /multiplex through the gateway', () => {
  test('a mixed batch: every result, in request order', async () => {
    const logged = gw.logs.access().length;
    const r = await batch({
      requests: [
        { uri: `${up.url}/ok` },
        { uri: `${up.url}/404` },
        { uri: `${dead}/` },
        { uri: `http://127.0.0.1:${garbagePort}/` },
        { uri: `http://10.0.0.1:${up.port}/` },
      ],
    });
    assert.equal(r.status, 200);
    assert.ok(r.headers['x-request-id']);
    const { responses } = r.json<BatchResult>();
    assert.equal(responses.length, 5);
    const first = ok(responses[0]);
    assert.equal(first.status, 200);
    assert.equal(first.body, 'hello');
    assert.equal(first.headers['content-type'], 'text/plain');
    assert.deepEqual([ok(responses[1]).status, ok(responses[1]).body], [404, 'nope']);
    assert.match(failed(responses[2], 'CONNECT').error.message, /ECONNREFUSED/);
    failed(responses[3], 'PROTOCOL');
    assert.match(failed(responses[4], 'FORBIDDEN_TARGET').error.message, /10\.0\.0\.1 is a private address/);
    for (const item of responses) assert.ok(Number.isInteger(item.duration_msec));

    // One access-log line, like any route.
    await until(() => gw.logs.access().length > logged, 'the access-log line');
    const lines = gw.logs.access().slice(logged);
    assert.equal(lines.length, 1);
    assert.equal(lines[0].route, 'batch');
    assert.equal(lines[0].status, 200);
    assert.equal(lines[0].bytes, r.body.length);
    assert.equal(lines[0].error, undefined);
  });

  test('the answer comes at the deadline: the slow item is TIMEOUT, the fast ones succeed', async () => {
    const pending = batch({
      timeout_msec: 1000,
      requests: [{ uri: `${up.url}/ok` }, { uri: `${up.url}/hold?deadline` }, { uri: `${up.url}/ok?2` }],
    });
    await until(() => held.has('?deadline'), 'the slow request at the upstream');
    const r = await pending;
    // Ordering, not wall-clock: the answer came while the upstream had still not answered the
    // slow request (nothing answers it but release(), and nothing has called it).
    const { responses } = r.json<BatchResult>();
    assert.equal(ok(responses[0]).body, 'hello');
    const slow = failed(responses[1], 'TIMEOUT');
    assert.match(slow.error.message, /1000 ms/);
    assert.ok(slow.duration_msec >= 999, `${slow.duration_msec}`);
    assert.equal(ok(responses[2]).body, 'hello');
    await until(() => abandoned.includes('?deadline'), 'the upstream to see the slow request abandoned');
  });

  test('a route timeout shorter than the batch ends it there, with partial results', async () => {
    const pending = results(
      { requests: [{ uri: `${up.url}/hold?route` }, { uri: `${up.url}/ok` }] },
      '/short/multiplex',
    );
    const responses = await pending;
    failed(responses[0], 'TIMEOUT');
    assert.equal(ok(responses[1]).body, 'hello');
    await until(() => !held.has('?route'), 'the held request to be abandoned');
  });

  test('the downstream going away aborts the batch: 499 in the access log, upstream request closed', async () => {
    const logged = gw.logs.access().length;
    const body = JSON.stringify({ requests: [{ uri: `${up.url}/hold?client` }] });
    const socket = connect(gw.port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(
      `POST /multiplex HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await until(() => held.has('?client'), 'the request at the upstream');
    socket.destroy();
    await until(() => abandoned.includes('?client'), 'the upstream to see the request closed');
    const line = await until(() => gw.logs.access().slice(logged)[0], 'the access-log line');
    assert.equal(line.status, 499);
    assert.equal(line.error, 'CLIENT_CLOSED');
  });

  test('binary bodies go out and come back as body_base64; text stays text', async () => {
    const bytes = Buffer.from([0, 255, 1, 254, 0x80]);
    const responses = await results({
      requests: [
        { method: 'POST', uri: `${up.url}/raw`, body_base64: bytes.toString('base64') },
        { method: 'POST', uri: `${up.url}/raw`, body: 'héllo ✓' },
        { uri: `${up.url}/binary` },
      ],
    });
    const bin = ok(responses[0]);
    assert.equal(bin.body, undefined);
    assert.deepEqual(Buffer.from(bin.body_base64!, 'base64'), bytes);
    assert.equal(ok(responses[1]).body, 'héllo ✓');
    assert.equal(ok(responses[2]).body_base64, Buffer.from([0xff, 0x00, 0xfe, 0x80]).toString('base64'));
  });

  test('templates: defaults merged into every request, the request’s own values win', async () => {
    const responses = await results({
      defaults: { method: 'POST', headers: { 'X-A': '1', 'X-B': 'template' }, body: 'from template' },
      requests: [
        { uri: `${up.url}/echo` },
        { uri: `${up.url}/echo`, method: 'PUT', headers: { 'x-b': 'own' }, body_base64: 'AAE=' },
      ],
    });
    const [a, b] = responses.map((r) => JSON.parse(ok(r).body!));
    assert.deepEqual([a.method, a.headers['x-a'], a.headers['x-b']], ['POST', '1', 'template']);
    assert.equal(Buffer.from(a.body, 'base64').toString(), 'from template');
    assert.deepEqual([b.method, b.headers['x-a'], b.headers['x-b'], b.body], ['PUT', '1', 'own', 'AAE=']);
  });

  test('the route is protected like any route: here by a header match', async () => {
    const body = { requests: [{ uri: `${up.url}/ok` }] };
    const refused = await batch(body, '/guarded/multiplex');
    assert.equal(refused.status, 404);
    assert.equal(refused.json<ErrorReply>().error.code, 'ROUTE_NOT_FOUND');
    const r = await batch(body, '/guarded/multiplex', { 'x-api-key': 's3cret' });
    assert.equal(r.status, 200);
    assert.equal(ok(r.json<BatchResult>().responses[0]).body, 'hello');
  });
});

describe('bad batches: 400 INVALID_BODY naming the problem, 413 beyond max_body_bytes', () => {
  const uri = 'http://127.0.0.1:1/';
  const cases: [string, unknown, string][] = [
    ['not an object', [], 'body: must be an object'],
    ['no requests', {}, 'requests: required'],
    ['requests of the wrong type', { requests: {} }, 'requests: must be an array'],
    ['a uri of the wrong type', { requests: [{ uri: 5 }] }, 'requests[0].uri: must be a string'],
    [
      'timeout_msec of the wrong type',
      { timeout_msec: '100', requests: [{ uri }] },
      'timeout_msec: must be an integer from 1 to 5000 (max_timeout of this route)',
    ],
    [
      'headers of the wrong type',
      { requests: [{ uri, headers: [] }] },
      'requests[0].headers: must be an object',
    ],
    ['an unknown top-level field', { requests: [{ uri }], extra: 1 }, 'extra: unknown field'],
    ['an unknown item field', { requests: [{ uri }, { uri, url: uri }] }, 'requests[1].url: unknown field'],
    ['an empty list', { requests: [] }, 'requests: must not be empty'],
    [
      'too many requests',
      { requests: [1, 2, 3, 4, 5, 6].map(() => ({ uri })) },
      'requests: at most 5 requests are allowed, got 6',
    ],
    [
      'a relative uri',
      { requests: [{ uri }, { uri }, { uri }, { uri: '/path' }] },
      'requests[3].uri: not an absolute http(s) URL',
    ],
    [
      'an item timeout over the batch’s',
      { timeout_msec: 250, requests: [{ uri, timeout_msec: 251 }] },
      'requests[0].timeout_msec: must be an integer from 1 to 250 (the batch timeout_msec)',
    ],
  ];
  for (const [name, body, message] of cases) {
    test(name, async () => {
      const r = await batch(body);
      assert.equal(r.status, 400);
      assert.deepEqual(r.json<ErrorReply>(), { error: { code: 'INVALID_BODY', message } });
    });
  }

  test('invalid JSON', async () => {
    const r = await batch('{"requests": [');
    assert.equal(r.status, 400);
    const { error } = r.json<ErrorReply>();
    assert.equal(error.code, 'INVALID_BODY');
    assert.match(error.message, /^body: invalid JSON \(.+\)$/);
    assert.equal(r.headers['x-request-id'] !== undefined, true);
  });

  test('the access log names the error', async () => {
    const logged = gw.logs.access().length;
    await batch({ requests: [] });
    const line = await until(() => gw.logs.access().slice(logged)[0], 'the access-log line');
    assert.deepEqual([line.route, line.status, line.error], ['batch', 400, 'INVALID_BODY']);
  });

  test('a body over max_body_bytes: 413 by Content-Length and while reading a chunked one', async () => {
    const big = JSON.stringify({ requests: [{ uri, body: 'x'.repeat(5000) }] });
    const declared = await batch(big);
    assert.equal(declared.status, 413);
    assert.deepEqual(declared.json<ErrorReply>(), {
      error: { code: 'BODY_TOO_LARGE', message: `request body of ${big.length} bytes is larger than 4096` },
    });
    assert.equal(declared.headers.connection, 'close');
    const chunked = await send(`${gw.url}/multiplex`, {
      method: 'POST',
      headers: { 'transfer-encoding': 'chunked' },
      body: big,
    });
    assert.equal(chunked.status, 413);
    assert.deepEqual(chunked.json<ErrorReply>(), {
      error: { code: 'BODY_TOO_LARGE', message: 'request body is larger than 4096 bytes' },
    });
  });
});

describe('target safety through the gateway', () => {
  test('without an allow list: loopback, a name resolving to it, metadata and mapped forms are refused', async () => {
    const c0 = up.connections;
    const responses = await results(
      {
        requests: [
          { uri: `${up.url}/ok` },
          { uri: `http://localhost:${up.port}/ok` }, // system DNS: resolves to loopback
          { uri: 'http://169.254.169.254/latest/meta-data/' },
          { uri: `http://[::ffff:127.0.0.1]:${up.port}/ok` },
          { uri: `http://[::1]:${up.port}/ok` },
        ],
      },
      '/public/multiplex',
    );
    assert.match(
      failed(responses[0], 'FORBIDDEN_TARGET').error.message,
      /127\.0\.0\.1 is a loopback address/,
    );
    assert.equal(
      failed(responses[1], 'FORBIDDEN_TARGET').error.message,
      'localhost resolves to a loopback address',
    );
    assert.match(failed(responses[2], 'FORBIDDEN_TARGET').error.message, /link-local/);
    assert.match(failed(responses[3], 'FORBIDDEN_TARGET').error.message, /loopback/);
    failed(responses[4], 'FORBIDDEN_TARGET');
    assert.equal(up.connections, c0, 'no connection reached the upstream');
  });

  test('a host name in the allow list does not open the loopback address it resolves to', async () => {
    const c0 = up.connections;
    const responses = await results(
      { requests: [{ uri: `http://localhost:${up.port}/ok` }, { uri: `${up.url}/ok` }] },
      '/by-name/multiplex',
    );
    assert.equal(
      failed(responses[0], 'FORBIDDEN_TARGET').error.message,
      'localhost resolves to a loopback address',
    );
    assert.match(
      failed(responses[1], 'FORBIDDEN_TARGET').error.message,
      /127\.0\.0\.1 is a loopback address/,
    );
    assert.equal(up.connections, c0, 'no connection reached the upstream');
  });
});

describe('connections and reloads', () => {
  test('many batches share a few pooled connections, across reloads that keep the options', async () => {
    const target = await startUpstream((_req, res) => res.end('pooled'));
    after(() => target.close());
    const many = { requests: [1, 2, 3, 4, 5].map(() => ({ uri: `${target.url}/` })) };
    for (let i = 0; i < 10; i++) {
      for (const r of await results(many)) assert.equal(ok(r).body, 'pooled');
    }
    assert.equal(target.requests.length, 50);
    assert.ok(target.connections <= 2, `50 requests took ${target.connections} connections (cap 2)`);
    const opened = target.connections;

    // Same options: the new snapshot keeps the route's handler and its idle connections.
    gw.runtime.apply(loadConfigText(yaml(), 'test.yaml', { env: {} }).config);
    for (const r of await results(many)) assert.equal(ok(r).body, 'pooled');
    assert.equal(target.connections, opened, 'no new connection after a reload that kept the options');

    // Changed options: a new handler, and the old one's connections are closed.
    assert.ok(target.sockets.size > 0, 'idle keep-alive connections are open');
    gw.runtime.apply(loadConfigText(yaml('\n      max_redirects: 3'), 'test.yaml', { env: {} }).config);
    await until(() => target.sockets.size === 0, 'the replaced handler to close its connections');
    for (const r of await results(many)) assert.equal(ok(r).body, 'pooled');
    assert.ok(target.connections > opened, 'the new handler opened its own connections');
  });
});
