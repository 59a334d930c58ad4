/**
 * Issue #2 point 6: timeouts and errors — connect, response-headers and idle-body timeouts,
 * the overall deadline, unreachable targets, and a client that goes away.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import {
  blackholeAddress,
  deadAddress,
  type Gateway,
  startGateway,
  startUpstream,
  type Upstream,
  until,
} from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

/** Sends a request and reports how the response ended: complete, or cut after headers. */
function fetchEnd(url: string): Promise<{ status: number; received: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let received = 0;
      res.on('data', (c: Buffer) => (received += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, received, complete: true }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, received, complete: false }));
      res.on('close', () => {
        if (!res.complete) resolve({ status: res.statusCode ?? 0, received, complete: false });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('timeouts and target errors', () => {
  let hang: Upstream;
  let stall: Upstream;
  let trickle: Upstream;
  let dead: string;
  let hole: { url: string; close(): void };
  let gw: Gateway;
  before(async () => {
    hang = await startUpstream(() => {}); // never answers
    stall = await startUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part'); // then nothing
    });
    trickle = await startUpstream((_req, res) => {
      res.writeHead(200);
      const t = setInterval(() => res.write('.'), 50); // never idle, never done
      res.on('close', () => clearInterval(t));
    });
    dead = await deadAddress();
    hole = await blackholeAddress();
    gw = await startGateway(`
pools:
  hang: { targets: [${hang.url}] }
  stall: { targets: [${stall.url}] }
  trickle: { targets: [${trickle.url}] }
  dead: { targets: [${dead}] }
  hole: { targets: [${hole.url}], connect_timeout: 300ms }
routes:
  - { match: { path: /hang }, proxy: { pool: hang }, headers_timeout: 300ms }
  - { match: { path: /stall }, proxy: { pool: stall }, idle_timeout: 300ms }
  - { match: { path: /trickle }, proxy: { pool: trickle }, timeout: 500ms }
  - { match: { path: /deadline }, proxy: { pool: hang }, timeout: 300ms }
  - { match: { path: /dead }, proxy: { pool: dead } }
  - { match: { path: /hole }, proxy: { pool: hole } }
  - { match: { path: /slow }, proxy: { pool: hang }, headers_timeout: 60s }
`);
  });
  after(async () => {
    await gw.close();
    hole.close();
    await Promise.all([hang.close(), stall.close(), trickle.close()]);
  });

  const errorOf = (r: { json: () => unknown }) =>
    (r.json() as { error: { code: string; message: string } }).error;

  test('refused target → 502 TARGET_UNREACHABLE', async () => {
    const r = await send(`${gw.url}/dead`);
    assert.equal(r.status, 502);
    assert.equal(errorOf(r).code, 'TARGET_UNREACHABLE');
  });

  test('connect timeout → 504 TARGET_TIMEOUT', async () => {
    const r = await send(`${gw.url}/hole`);
    assert.equal(r.status, 504);
    assert.equal(errorOf(r).code, 'TARGET_TIMEOUT');
    assert.match(errorOf(r).message, /connect/);
  });

  test('response-headers timeout → 504 TARGET_TIMEOUT', async () => {
    const r = await send(`${gw.url}/hang`);
    assert.equal(r.status, 504);
    assert.equal(errorOf(r).code, 'TARGET_TIMEOUT');
    assert.match(errorOf(r).message, /headers/);
  });

  test('overall deadline before headers → 504', async () => {
    const r = await send(`${gw.url}/deadline`);
    assert.equal(r.status, 504);
    assert.match(errorOf(r).message, /deadline/);
  });

  test('idle body timeout after headers → the downstream response is cut, not completed', async () => {
    const r = await fetchEnd(`${gw.url}/stall`);
    assert.equal(r.status, 200);
    assert.equal(r.complete, false);
    assert.equal(r.received, 'first part'.length);
    const line = await until(() => gw.logs.access().find((l) => l.url === '/stall'), 'access log');
    assert.equal(line.error, 'TARGET_TIMEOUT');
  });

  test('overall deadline during a never-ending body → cut', async () => {
    const r = await fetchEnd(`${gw.url}/trickle`);
    assert.equal(r.status, 200);
    assert.equal(r.complete, false);
    assert.ok(r.received > 0);
  });

  test('client going away aborts the upstream attempt and frees its connection', async () => {
    const before = hang.requests.length;
    const req = request(`${gw.url}/slow`, { agent: false });
    req.on('error', () => {});
    req.end();
    const upstreamReq = await until(() => hang.requests[before], 'request to reach the target');
    const closed = new Promise<void>((resolve) => upstreamReq.socket.once('close', () => resolve()));
    req.destroy();
    await closed; // the gateway destroyed its connection to the target
    await until(() => hang.sockets.size === 0, 'no socket left open to the target');
    const line = await until(() => gw.logs.access().find((l) => l.url === '/slow'), 'access log');
    assert.equal(line.status, 499);
    assert.equal(line.error, 'CLIENT_CLOSED');
  });
});
