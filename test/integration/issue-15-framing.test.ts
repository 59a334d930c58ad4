/**
 * Issue 15, items 8, 9, 13 and 15: request framing at the listener.
 *
 * - 8: `Expect: 100-continue` was answered `100 Continue` before the route and the limits were
 *   checked (100 then 413, 100 then 404); now the final status goes out alone when it is known
 *   without the body, and `Expect: 200-ok` gets a JSON 417.
 * - 9: a refused upload (413) was closed at once, so a client still sending got EPIPE/ECONNRESET
 *   and lost the 413; now the socket is half-closed and drained for a bounded time.
 * - 13: `GET /v` (HTTP/0.9) and `GET /v HTTP/2.0` were forwarded as HTTP/1.1 (now 400 / 505);
 *   HTTP/1.0 with Transfer-Encoding kept the connection open (RFC 9112 §6.1: close it).
 * - 15: the access log said `bytes: 0` for the gateway's own JSON error answers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Gateway, NODE, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { sendRaw } from '../helpers/http.ts';

const statusOf = (raw: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
const bodyOf = (raw: string) =>
  JSON.parse(raw.slice(raw.lastIndexOf('\r\n\r\n') + 4)) as { error: { code: string; message: string } };

/** Raw bytes in; what the gateway sent, and whether it closed the connection within `waitMs`. */
function exchange(port: number, data: string, waitMs = 3000): Promise<{ out: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ out, closed: false });
    }, waitMs);
    socket.on('data', (c: Buffer) => (out += c.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ out, closed: true });
    });
    socket.write(data);
  });
}

/**
 * argv: port, path, body bytes, tries, `length` or `chunked`; prints the status (or the error
 * code) of each upload.
 */
const UPLOADER = `
import { request } from 'node:http';
const [port, path, size, tries, framing] = process.argv.slice(1);
const body = Buffer.alloc(Number(size), 'x');
const results = [];
for (let i = 0; i < Number(tries); i++) {
  results.push(await new Promise((resolve) => {
    const headers = framing === 'chunked' ? {} : { 'content-length': String(body.length) };
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode)));
      res.on('error', (e) => resolve(e.code ?? String(e)));
    });
    req.on('error', (e) => resolve(e.code ?? String(e)));
    if (framing !== 'chunked') return req.end(body);
    let at = 0;
    const pump = () => {
      while (at < body.length) {
        const ok = req.write(body.subarray(at, (at += 1 << 16)));
        if (!ok) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  }));
}
process.stdout.write(JSON.stringify(results));
`;

async function uploads(port: number, path: string, size: number, tries: number, framing: 'length' | 'chunked') {
  const child = spawn(NODE, ['--input-type=module', '-e', UPLOADER, String(port), path, String(size), String(tries), framing], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c));
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  return JSON.parse(out) as string[];
}

/** Resolves when the socket closes, however (an EPIPE or a reset included). */
const closed = (socket: Socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()));

interface Upload {
  status: number;
  continued: boolean;
  body: string;
}

/** A node:http upload; `expect` waits for `100 Continue` before the body, as clients do. */
function upload(port: number, path: string, body: Buffer, expect: string | null): Promise<Upload> {
  return new Promise((resolve, reject) => {
    let continued = false;
    const headers: Record<string, string> = { 'content-length': String(body.length) };
    if (expect !== null) headers.expect = expect;
    const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, continued, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (expect === '100-continue') {
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
    } else req.end(body);
  });
}

describe('issue 15: request framing at the listener', () => {
  let up: Upstream;
  let gw: Gateway;
  const bodies: string[] = [];
  before(async () => {
    up = await startUpstream((req, res) => {
      let b = '';
      req.on('data', (c: Buffer) => (b += c));
      req.on('end', () => {
        bodies.push(b);
        res.end(`seen HTTP/${req.httpVersion} ${req.url}`);
      });
    });
    gw = await startGateway(`
log: { level: info }
limits: { keep_alive_timeout: 60s }
pools: { p: { targets: [${up.url}] } }
routes:
  - { match: { path: /small }, proxy: { pool: p }, max_body_bytes: 1KiB }
  - { match: { path: /fixed }, respond: { status: 204 } }
  - { match: { path: /v }, proxy: { pool: p } }
`);
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  test('item 8: Expect 100-continue over max_body_bytes or on no route: the final status, without 100', async () => {
    for (const [path, status, code] of [
      ['/small', 413, 'BODY_TOO_LARGE'],
      ['/nowhere', 404, 'ROUTE_NOT_FOUND'],
    ] as const) {
      const { out, closed } = await exchange(
        gw.port,
        `POST ${path} HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n`,
      );
      assert.equal(statusOf(out), status, out);
      assert.doesNotMatch(out, /100 Continue/);
      assert.equal(bodyOf(out).error.code, code);
      // The client may still send the body it announced: the connection is not reused.
      assert.match(out, /connection: close/i);
      assert.ok(closed, 'the connection is closed after the refusal');
    }
    // A route that answers without the body needs no 100 either.
    const fixed = await exchange(gw.port, 'POST /fixed HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    assert.equal(statusOf(fixed.out), 204, fixed.out);
    assert.doesNotMatch(fixed.out, /100 Continue/);
    assert.equal(up.requests.length, 0);
  });

  test('item 8: Expect 100-continue within the limits: 100, then the body is forwarded', async () => {
    const r = await upload(gw.port, '/small', Buffer.from('hello'), '100-continue');
    assert.equal(r.status, 200, r.body);
    assert.ok(r.continued, 'the client got 100 Continue');
    assert.equal(bodies.at(-1), 'hello');
    // The client that waits for 100 and is refused gets the refusal, and never sends its body.
    const refused = await upload(gw.port, '/small', Buffer.alloc(4096, 'x'), '100-continue');
    assert.equal(refused.status, 413);
    assert.equal(refused.continued, false);
  });

  test('item 8: any other expectation is a JSON 417, never forwarded', async () => {
    const seen = up.requests.length;
    const raw = await sendRaw(gw.port, 'POST /v HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\nhello');
    assert.equal(statusOf(raw), 417, raw);
    assert.equal(bodyOf(raw).error.code, 'EXPECTATION_FAILED');
    assert.match(raw, /content-type: application\/json/i);
    assert.match(raw, /x-request-id: /i);
    assert.equal(up.requests.length, seen);
  });

  test('item 9: a client still sending a refused upload reads its 413 (lingering close)', async () => {
    // 8 MiB is more than the socket buffers hold: the client is still writing when the 413 goes
    // out. Closing at once reset the connection under it: before the change about half of these
    // got EPIPE instead of the 413. The client runs in its own process, as a real one does (in
    // this process its reads and the gateway's close would take turns on one event loop).
    assert.deepEqual(await uploads(gw.port, '/small', 8 << 20, 20, 'length'), Array(20).fill('413'));
    assert.equal(bodies.filter((b) => b.length > 1024).length, 0, 'nothing over the limit was forwarded');
  });

  test('item 9: a chunked upload cut at max_body_bytes on its way to the target: 413 too', async () => {
    // Counted as it streams, refused at the chunk that crosses the limit: the request is
    // destroyed under the answer (the first version of the lingering close crashed here).
    assert.deepEqual(await uploads(gw.port, '/small', 8 << 20, 10, 'chunked'), Array(10).fill('413'));
    assert.equal(bodies.filter((b) => b.length > 1024).length, 0, 'nothing over the limit was delivered');
  });

  test('item 9: the lingering close is bounded: a client that trickles, or never stops, is cut', async () => {
    const head = 'POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741824\r\n\r\n';
    // Trickles, and keeps its side open: without a bound the socket would stay until
    // limits.request_timeout (5 minutes). Cut after LINGER_MS (2 s): the next write fails.
    const trickle = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    let answer = '';
    trickle.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    trickle.on('error', () => {});
    trickle.write(head + 'x'.repeat(4096));
    const drip = setInterval(() => trickle.write('x'), 50);
    await closed(trickle);
    clearInterval(drip);
    assert.equal(statusOf(answer), 413, answer);
    // Never stops: cut once LINGER_BYTES (16 MiB, checked every 100 ms) were read, far short of
    // the 1 GiB announced, which it could send whole within LINGER_MS without the byte bound.
    const greedy = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
    let sent = 0;
    let got = '';
    greedy.on('data', (c: Buffer) => (got += c.toString('latin1')));
    greedy.on('error', () => {});
    const chunk = Buffer.alloc(1 << 16, 'x');
    const pump = () => {
      while (!greedy.destroyed && greedy.write(chunk)) sent += chunk.length;
    };
    greedy.on('drain', pump);
    greedy.write(head);
    pump();
    await closed(greedy);
    assert.equal(statusOf(got), 413, got);
    assert.ok(sent < 512 << 20, `the client could send ${sent} bytes`);
  });

  test('item 13: HTTP/0.9 is 400, HTTP/2.0 on the HTTP/1.1 listener is 505, neither forwarded', async () => {
    const seen = up.requests.length;
    const v09 = await sendRaw(gw.port, 'GET /v\r\n\r\n');
    assert.equal(statusOf(v09), 400, v09);
    assert.equal(bodyOf(v09).error.code, 'BAD_REQUEST');
    assert.match(bodyOf(v09).error.message, /HTTP\/0\.9/);
    for (const version of ['2.0']) {
      const raw = await sendRaw(gw.port, `GET /v HTTP/${version}\r\nHost: a\r\nConnection: close\r\n\r\n`);
      assert.equal(statusOf(raw), 505, raw);
      assert.equal(bodyOf(raw).error.code, 'HTTP_VERSION_NOT_SUPPORTED');
    }
    // An upgrade in the HTTP/2.0 form is refused the same way.
    const upg = await sendRaw(
      gw.port,
      'GET /v HTTP/2.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    assert.equal(statusOf(upg), 505, upg);
    assert.equal(up.requests.length, seen);
    // HTTP/1.0 and 1.1 still pass.
    const v10 = await sendRaw(gw.port, 'GET /v HTTP/1.0\r\nHost: a\r\n\r\n');
    assert.equal(statusOf(v10), 200, v10);
  });

  test('item 13: HTTP/1.0 with Transfer-Encoding is answered, then the connection is closed', async () => {
    const { out, closed } = await exchange(
      gw.port,
      'POST /v HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    );
    assert.equal(statusOf(out), 200, out);
    assert.match(out, /connection: close/i);
    assert.ok(closed, 'the connection is closed after the answer');
    // Without Transfer-Encoding an HTTP/1.0 keep-alive connection stays open (the control).
    const kept = await exchange(gw.port, 'POST /v HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc', 1000);
    assert.equal(statusOf(kept.out), 200, kept.out);
    assert.equal(kept.closed, false, kept.out);
  });

  test('item 15: the access log counts the body bytes of the gateway\'s own JSON errors', async () => {
    const raw = await sendRaw(gw.port, 'GET /nothing-here HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(raw), 404);
    const length = Number(/content-length: (\d+)/i.exec(raw)?.[1]);
    assert.ok(length > 0);
    const line = await until(() => gw.logs.access().find((l) => l.url === '/nothing-here'), 'access log line');
    assert.equal(line.status, 404);
    assert.equal(line.bytes, length);
    const tooBig = await sendRaw(gw.port, 'POST /small?log HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n');
    assert.equal(statusOf(tooBig), 413);
    const big = await until(() => gw.logs.access().find((l) => l.url === '/small?log'), 'access log line');
    assert.equal(big.bytes, Number(/content-length: (\d+)/i.exec(tooBig)?.[1]));
  });
});
