/**
 * Issue #2 point 6, inbound side: header size (431), body size per route (413), slowloris
 * timeouts, and framing ambiguities refused with 400 and never forwarded.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { configProblems, type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send, sendRaw } from '../helpers/http.ts';

const jsonError = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)).error;

describe('inbound limits and framing', () => {
  let up: Upstream;
  let gw: Gateway;
  before(async () => {
    up = await startUpstream((req, res) => {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
    });
    gw = await startGateway(`
limits: { max_header_bytes: 4KiB, headers_timeout: 500ms, request_timeout: 2s }
pools:
  up: { targets: [${up.url}] }
routes:
  - { match: { path: /small/* }, proxy: { pool: up }, max_body_bytes: 1KiB }
  - { match: { path: /* }, proxy: { pool: up } }
`);
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  test('request head over max_header_bytes → 431 with the JSON error', async () => {
    const raw = await sendRaw(gw.port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`);
    assert.match(raw, /^HTTP\/1.1 431 /);
    assert.equal(jsonError(raw).code, 'HEADERS_TOO_LARGE');
  });

  test('Content-Length over the route limit → 413 before anything is read or forwarded', async () => {
    const before = up.requests.length;
    const r = await send(`${gw.url}/small/x`, { method: 'POST', body: 'x'.repeat(2000) });
    assert.equal(r.status, 413);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'BODY_TOO_LARGE');
    assert.equal(r.headers.connection, 'close');
    assert.equal(up.requests.length, before);
  });

  test('a chunked body that grows past the limit → 413; under the limit passes', async () => {
    const ok = await send(`${gw.url}/small/x`, {
      method: 'POST',
      body: 'x'.repeat(1000),
      headers: { 'transfer-encoding': 'chunked' },
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.text, 'got 1000');
    const r = await send(`${gw.url}/small/x`, {
      method: 'POST',
      body: 'x'.repeat(5000),
      headers: { 'transfer-encoding': 'chunked' },
    });
    assert.equal(r.status, 413);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'BODY_TOO_LARGE');
  });

  test('Content-Length together with Transfer-Encoding → 400, never forwarded', async () => {
    const before = up.requests.length;
    const raw = await sendRaw(
      gw.port,
      'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
    );
    assert.match(raw, /^HTTP\/1.1 400 /);
    assert.equal(jsonError(raw).code, 'AMBIGUOUS_FRAMING');
    assert.equal(up.requests.length, before);
  });

  test('conflicting Content-Length values and bad chunk framing → 400, never forwarded', async () => {
    const before = up.requests.length;
    const a = await sendRaw(
      gw.port,
      'POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
    );
    assert.match(a, /^HTTP\/1.1 400 /);
    const b = await sendRaw(
      gw.port,
      'POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n0\r\n\r\n',
    );
    assert.match(b, /^HTTP\/1.1 400 /);
    const c = await sendRaw(gw.port, 'GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n');
    assert.match(c, /^HTTP\/1.1 400 /);
    assert.equal(up.requests.length, before);
  });

  test('HTTP/1.1 without Host → 400 with the JSON error', async () => {
    const raw = await sendRaw(gw.port, 'GET /x HTTP/1.1\r\n\r\n');
    assert.match(raw, /^HTTP\/1.1 400 /);
    assert.equal(jsonError(raw).code, 'BAD_REQUEST');
  });

  test('slowloris: a client that never finishes its headers is answered 408 and cut off', async () => {
    const socket = connect(gw.port, '127.0.0.1');
    let out = '';
    socket.on('data', (c) => (out += c));
    socket.write('GET /x HTTP/1.1\r\nHost: x\r\n');
    // Keep dribbling a header byte now and then, as slowloris does: it must not help.
    const drip = setInterval(() => socket.writable && socket.write('X-A: b\r\n'), 100);
    await until(() => socket.destroyed || socket.readableEnded, 'the gateway to close the slow connection');
    clearInterval(drip);
    assert.match(out, /^HTTP\/1.1 408 /);
  });
});

test('a headers_timeout longer than request_timeout is a config error naming both keys', () => {
  // node:http throws a RangeError at listen for this; the config check says it first.
  const problems = configProblems('limits: { headers_timeout: 20s, request_timeout: 10s }\n');
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.equal(problems[0].path, 'limits.headers_timeout');
  assert.match(problems[0].message, /longer than limits\.request_timeout \(10s\)/);
  assert.deepEqual(configProblems('limits: { headers_timeout: 20s, request_timeout: 0s }\n'), []);
});
