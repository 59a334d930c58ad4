/**
 * Issue 15 item 12, last part: a `100 Continue` a target sends without being asked is passed
 * over and its final answer relayed (RFC 9110 §15.2), as HAProxy and nginx do. undici 8's
 * HTTP/1.1 client alone drops the connection on one (src/lib/continue.ts says how Manifold
 * passes it over). Targets here are raw TCP servers, so every byte they send is chosen:
 * the 100 whole, split byte by byte over writes, two of them, a 102 and a 103, before an upload's
 * body, and the same bytes inside a body, where they must reach the client untouched.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { type Gateway, startGateway } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

function final(body: string, extra = ''): string {
  return `HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}

interface Request {
  method: string;
  path: string;
  body: Buffer;
}

/**
 * A keep-alive HTTP/1.1 target that reads one request at a time (Content-Length bodies) and
 * answers it with `answer`, which writes raw bytes. `onHead` runs when a head is complete,
 * before its body is read (to send a 100 first, as IIS does).
 */
async function rawTarget(
  answer: (req: Request, socket: Socket) => Promise<void>,
  onHead?: (socket: Socket) => void,
): Promise<{ server: NetServer; url: string; connections: () => number }> {
  let connections = 0;
  const server = createNetServer((socket) => {
    connections++;
    let buf = Buffer.alloc(0);
    let busy = false;
    let head: { method: string; path: string; length: number } | null = null;
    const next = async (): Promise<void> => {
      if (busy) return;
      if (head === null) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const text = buf.toString('latin1', 0, end);
        buf = buf.subarray(end + 4);
        const [method, path] = text.split(' ');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? 0);
        head = { method, path, length };
        onHead?.(socket);
      }
      if (buf.length < head.length) return;
      const req = { method: head.method, path: head.path, body: buf.subarray(0, head.length) };
      buf = buf.subarray(head.length);
      head = null;
      busy = true;
      await answer(req, socket);
      busy = false;
      void next();
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      void next();
    });
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    connections: () => connections,
  };
}

/** Writes `text` one byte per TCP write, letting each go out on its own. */
async function trickle(socket: Socket, text: string): Promise<void> {
  for (const ch of text) {
    socket.write(ch);
    await sleep(2);
  }
}

describe('issue 15 item 12: an unasked 100 Continue is passed over', () => {
  const targets: Array<Awaited<ReturnType<typeof rawTarget>>> = [];
  let gw: Gateway;
  let whole: Awaited<ReturnType<typeof rawTarget>>;
  before(async () => {
    whole = await rawTarget(async (req, s) => {
      s.write(CONTINUE);
      await sleep(5);
      s.write(final(`whole ${req.path}`));
    });
    const split = await rawTarget(async (_req, s) => {
      await trickle(s, CONTINUE);
      s.write(final('split'));
    });
    const several = await rawTarget(async (_req, s) => {
      s.write(`${CONTINUE}HTTP/1.1 100\r\nX-Note: no reason phrase\r\n\r\n`);
      s.write('HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n');
      s.write(final('several'));
    });
    // The 100 goes out as soon as the head is read, before the body (Expect-less, unasked).
    const upload = await rawTarget(
      async (req, s) => {
        s.write(final(`got ${req.body.length} bytes: ${req.body.toString()}`));
      },
      (s) => s.write(CONTINUE),
    );
    // The final answer's head first, then, in a write of its own, body bytes that read like a
    // 100 answer: they are body, and reach the client as they are.
    const inBody = await rawTarget(async (_req, s) => {
      const body = `${CONTINUE}tail`;
      s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`);
      await sleep(30);
      s.write(body);
    });
    // A 100 and then the connection closes: nothing to relay, a 502 as before.
    const closes = await rawTarget(async (_req, s) => {
      s.end(CONTINUE);
    });
    // A status line that merely starts like one: `HTTP/1.1 1000` is not a 100.
    const lookalike = await rawTarget(async (_req, s) => {
      s.write('HTTP/1.1 1000 Nope\r\n\r\n');
      s.destroy();
    });
    targets.push(whole, split, several, upload, inBody, closes, lookalike);
    gw = await startGateway(`
log: { level: warn, access: false }
pools:
  whole: { targets: [${whole.url}] }
  split: { targets: [${split.url}] }
  several: { targets: [${several.url}] }
  upload: { targets: [${upload.url}] }
  inbody: { targets: [${inBody.url}] }
  closes: { targets: [${closes.url}] }
  lookalike: { targets: [${lookalike.url}] }
routes:
  - { match: { path: /whole/* }, proxy: { pool: whole } }
  - { match: { path: /split }, proxy: { pool: split } }
  - { match: { path: /several }, proxy: { pool: several } }
  - { match: { path: /upload }, proxy: { pool: upload } }
  - { match: { path: /inbody }, proxy: { pool: inbody } }
  - { match: { path: /closes }, proxy: { pool: closes, max_attempts: 1 } }
  - { match: { path: /lookalike }, proxy: { pool: lookalike, max_attempts: 1 } }
  - match: { path: /multiplex }
    multiplex: { allow: ["127.0.0.0/8"] }
`);
  });
  after(async () => {
    await gw?.close();
    for (const t of targets) t.server.close();
  });

  test('the final answer is relayed; the next request on the same connection too', async () => {
    for (const path of ['/whole/a', '/whole/b', '/whole/c']) {
      const r = await send(`${gw.url}${path}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.text, `whole ${path}`);
    }
    // One upstream connection carried all three: the filter is armed again for each request.
    assert.equal(whole.connections(), 1);
  });

  test('a 100 split over one-byte writes; two 100s, a 102 and a 103 in a row', async () => {
    const split = await send(`${gw.url}/split`);
    assert.equal(split.status, 200, split.text);
    assert.equal(split.text, 'split');
    const several = await send(`${gw.url}/several`);
    assert.equal(several.status, 200, several.text);
    assert.equal(several.text, 'several');
  });

  test('an upload whose target sends 100 before reading the body', async () => {
    const body = 'x'.repeat(100_000);
    const r = await send(`${gw.url}/upload`, { method: 'POST', body });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    assert.equal(r.text, `got ${body.length} bytes: ${body}`);
  });

  test('the same bytes inside a body are body: relayed untouched', async () => {
    const r = await send(`${gw.url}/inbody`);
    assert.equal(r.status, 200);
    assert.equal(r.text, `${CONTINUE}tail`);
  });

  test('a 100 and then nothing, or a status that only starts like 100: 502, the gateway stays up', async () => {
    const closes = await send(`${gw.url}/closes`);
    assert.equal(closes.status, 502, closes.text);
    const lookalike = await send(`${gw.url}/lookalike`);
    assert.equal(lookalike.status, 502, lookalike.text);
    assert.equal(lookalike.json<{ error: { code: string } }>().error.code, 'TARGET_PROTOCOL');
    const again = await send(`${gw.url}/whole/again`);
    assert.equal(again.status, 200);
  });

  test('multiplex items pass it over too', async () => {
    const r = await send(`${gw.url}/multiplex`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ requests: [{ uri: `${whole.url}/whole/m` }] }),
    });
    assert.equal(r.status, 200, r.text);
    const item = r.json<{ responses: Array<{ status: number; body: string }> }>().responses[0];
    assert.equal(item.status, 200, JSON.stringify(item));
    assert.equal(item.body, 'whole /whole/m');
  });

});
