/**
 * Issue 15: answers given before the pipeline takes a request (417, 429 under admission,
 * CONNECT 405, a head node:http cannot parse) get an access-log line like any other answer,
 * with their status, error code and the request id the client was sent.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { sendRaw } from '../helpers/http.ts';

const statusOf = (raw: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
const idOf = (raw: string): string | undefined => /x-request-id: (\S+)/i.exec(raw)?.[1];

describe('refusals before the pipeline are access-logged', () => {
  let up: Upstream;
  let gw: Gateway;
  let release: () => void = () => {};
  before(async () => {
    up = await startUpstream((req, res) => {
      if (req.url === '/hold') release = () => res.end('held');
      else res.end('ok');
    });
    gw = await startGateway(`
log: { level: info }
limits: { max_inflight_per_client: 1 }
pools: { p: { targets: [${up.url}] } }
routes:
  - { match: { path: /* }, proxy: { pool: p } }
`);
  });
  after(async () => {
    release();
    await gw.close();
    await up.close();
  });

  const lineFor = (status: number, code: string) =>
    until(() => gw.logs.access().find((l) => l.status === status && l.error === code));

  test('417 to an expectation it cannot meet', async () => {
    const raw = await sendRaw(gw.port, 'POST /v HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\nhello');
    assert.equal(statusOf(raw), 417, raw);
    const line = await lineFor(417, 'EXPECTATION_FAILED');
    assert.equal(line.method, 'POST');
    assert.equal(line.url, '/v');
    assert.equal(line.route, null);
    assert.equal(line.req_id, idOf(raw));
    assert.ok(Number(line.bytes) > 0, 'the bytes of the JSON answer are logged');
  });

  test('405 to CONNECT', async () => {
    const raw = await sendRaw(gw.port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assert.equal(statusOf(raw), 405, raw);
    const line = await lineFor(405, 'METHOD_NOT_ALLOWED');
    assert.equal(line.method, 'CONNECT');
    assert.equal(line.url, 'example.com:443');
    assert.equal(line.req_id, idOf(raw));
  });

  test('400 to a head that cannot be parsed', async () => {
    const raw = await sendRaw(gw.port, 'this is not HTTP\r\n\r\n');
    assert.equal(statusOf(raw), 400, raw);
    const line = await lineFor(400, 'BAD_REQUEST');
    assert.equal(line.method, '');
    assert.equal(line.req_id, idOf(raw));
  });

  test('429 past limits.max_inflight_per_client', async () => {
    const held = new Promise<void>((resolve, reject) => {
      request(`${gw.url}/hold`, (res) => {
        res.resume();
        res.on('end', resolve);
      })
        .on('error', reject)
        .end();
    });
    await until(() => up.requests.some((r) => r.url === '/hold'));
    const raw = await sendRaw(gw.port, 'GET /second HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(statusOf(raw), 429, raw);
    const line = await lineFor(429, 'CLIENT_LIMIT');
    assert.equal(line.url, '/second');
    assert.equal(line.req_id, idOf(raw));
    release();
    await held;
  });
});

describe('refused upgrades are access-logged', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway(`
log: { level: info }
routes:
  - { id: static, match: { path: /static }, respond: { status: 200, body: "ok" } }
`);
  });
  after(() => gw.close());

  const upgrade = (path: string) =>
    sendRaw(gw.port, `GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);

  test('an upgrade no route takes: 404 with its line', async () => {
    const raw = await upgrade('/nowhere');
    assert.equal(statusOf(raw), 404, raw);
    const line = await until(() => gw.logs.access().find((l) => l.url === '/nowhere'));
    assert.equal(line.status, 404);
    assert.equal(line.error, 'ROUTE_NOT_FOUND');
    assert.equal(line.route, null);
    assert.equal(line.req_id, idOf(raw));
    assert.equal(line.bytes, Buffer.byteLength(raw.slice(raw.indexOf('\r\n\r\n') + 4)));
  });

  test('an upgrade to a route that does not proxy: 400 with the route in its line', async () => {
    const raw = await upgrade('/static');
    assert.equal(statusOf(raw), 400, raw);
    const line = await until(() => gw.logs.access().find((l) => l.url === '/static'));
    assert.equal(line.status, 400);
    assert.equal(line.error, 'BAD_REQUEST');
    assert.equal(line.route, 'static');
    assert.equal(line.req_id, idOf(raw));
  });
});
