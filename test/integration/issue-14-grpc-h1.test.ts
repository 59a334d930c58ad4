/**
 * Issue 14, item 5, the parts that do not need HTTP/2: trailers relayed (gRPC's `grpc-status`
 * travels in them), `TE: trailers` passed on, `grpc-timeout` honoured as the request's deadline,
 * and a gateway error before headers answered as a gRPC status when the request is
 * `application/grpc`. Over HTTP/1.1 with chunked bodies, which carry trailers the same way.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type Gateway, startGateway, startUpstream, type Upstream } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string | undefined>;
  body: string;
}

/** A POST whose answer's trailers are kept (send() in the helpers does not keep them). */
function call(url: string, headers: Record<string, string>, body = 'x'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, trailers: res.trailers, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const GRPC = { 'content-type': 'application/grpc', te: 'trailers' };

describe('issue 14: gRPC over the proxy path (HTTP/1.1 parts)', () => {
  let up: Upstream;
  let gw: Gateway;
  before(async () => {
    up = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/svc/hang') return; // answers never: the deadline must end it
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/grpc', 'x-seen-te': String(req.headers.te) });
        res.write('payload');
        res.addTrailers({ 'grpc-status': '0', 'grpc-message': 'fine', 'set-cookie': 'a=b' });
        res.end();
      });
    });
    gw = await startGateway(`
pools: { p: { targets: [${up.url}] } }
routes:
  - { match: { path: /svc/* }, proxy: { pool: p }, timeout: 30s }
`);
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  test("a target's trailers reach the client; forbidden trailer fields do not", async () => {
    const a = await call(`${gw.url}/svc/ok`, GRPC);
    assert.equal(a.status, 200);
    assert.equal(a.body, 'payload');
    assert.equal(a.trailers['grpc-status'], '0');
    assert.equal(a.trailers['grpc-message'], 'fine');
    assert.equal(a.trailers['set-cookie'], undefined);
  });

  test('TE: trailers is passed on as the one TE value; other TE values are not', async () => {
    assert.equal((await call(`${gw.url}/svc/ok`, GRPC)).headers['x-seen-te'], 'trailers');
    const other = await call(`${gw.url}/svc/ok`, { te: 'gzip', connection: 'te' });
    assert.equal(other.headers['x-seen-te'], 'undefined');
  });

  test('grpc-timeout ends the call as DEADLINE_EXCEEDED, long before the route timeout', async () => {
    const a = await call(`${gw.url}/svc/hang`, { ...GRPC, 'grpc-timeout': '200m' });
    assert.equal(a.status, 200);
    assert.equal(a.headers['grpc-status'], '4');
    assert.equal(a.headers['x-manifold-error'], 'TARGET_TIMEOUT');
    assert.match(String(a.headers['grpc-message']), /grpc-timeout deadline of 200 ms/);
  });

  test('an invalid grpc-timeout is refused as INTERNAL, and nothing reaches the target', async () => {
    const before = up.requests.length;
    const a = await call(`${gw.url}/svc/ok`, { ...GRPC, 'grpc-timeout': '1000000000S' });
    assert.equal(a.headers['grpc-status'], '13');
    assert.equal(a.headers['x-manifold-error'], 'BAD_REQUEST');
    assert.equal(up.requests.length, before);
  });

  test('no route for a gRPC call: UNIMPLEMENTED as a gRPC status, not JSON', async () => {
    const a = await call(`${gw.url}/other.Service/Method`, GRPC);
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'application/grpc');
    assert.equal(a.headers['grpc-status'], '12');
    assert.equal(a.body, '');
    assert.match(String(a.headers['grpc-message']), /^ROUTE_NOT_FOUND: /);
  });

  test('the same error to a plain request is still JSON', async () => {
    const r = await send(`${gw.url}/other`);
    assert.equal(r.status, 404);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'ROUTE_NOT_FOUND');
  });
});
