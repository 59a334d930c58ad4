/**
 * Issue 15, "should fix" items 10-12 and the WebSocket bullet: what the gateway adds to and
 * refuses from what it forwards and what its targets answer.
 * - 10: a request carrying `forwarding.loop_limit` of our own Via entries is refused 508
 *   `LOOP_DETECTED`; a pool that points at the gateway itself ends after a few hops.
 * - WebSocket: a 101 without the asked-for `Upgrade` is a 502; `routes[].tunnel_idle_timeout`
 *   closes a silent tunnel; at the end of `shutdown.grace` a WebSocket gets a close frame 1001.
 * - 11: on a dual-stack listener (`host: "::"`) the client address is the IPv4 one, not
 *   `::ffff:127.0.0.1`; a client's own `Forwarded` is appended to, and `forwarding.forwarded`
 *   sends RFC 7239 `Forwarded` on every request.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Runtime, startRuntime } from '../../src/cluster/runtime.ts';
import { loadConfigText } from '../../src/config/load.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { FrameBoundary } from '../../src/proxy/upgrade.ts';
import { WebSocket, WebSocketServer } from 'ws';
import { type Gateway, LogCapture, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send, sendRaw } from '../helpers/http.ts';

/** A raw TCP relay to a port set later (the gateway's own): a pool pointing back at the gateway. */
async function relay(): Promise<{ server: NetServer; url: string; connections: number; to: number }> {
  const state = { server: undefined as unknown as NetServer, url: '', connections: 0, to: 0 };
  const sockets = new Set<Socket>();
  state.server = createNetServer((down) => {
    state.connections++;
    const up = connect(state.to, '127.0.0.1');
    sockets.add(down).add(up);
    down.pipe(up).pipe(down);
    const end = () => {
      down.destroy();
      up.destroy();
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  state.server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  state.server.listen(0, '127.0.0.1');
  await once(state.server, 'listening');
  state.url = `http://127.0.0.1:${(state.server.address() as { port: number }).port}`;
  return state;
}

describe('issue 15 item 10: loop detection', () => {
  let up: Upstream;
  let loop: Awaited<ReturnType<typeof relay>>;
  let gw: Gateway;
  before(async () => {
    up = await startUpstream((req, res) => res.end(JSON.stringify(req.headers)));
    loop = await relay();
    gw = await startGateway(`
log: { level: warn, access: false }
pools:
  up: { targets: [${up.url}] }
  self: { targets: [${loop.url}] }
routes:
  - { match: { path: /self/* }, proxy: { pool: self }, timeout: 5s }
  - { match: { path: /* }, proxy: { pool: up } }
`);
    loop.to = gw.port;
  });
  after(async () => {
    await gw.close();
    loop.server.close();
    await up.close();
  });

  test('two of our own Via entries: 508 LOOP_DETECTED, the target never sees it', async () => {
    const before = up.requests.length;
    for (const headers of [
      ['via', '1.1 manifold, 1.1 manifold'],
      ['via', '1.1 manifold', 'via', '1.0 manifold'],
      ['via', 'HTTP/1.1 Manifold (x, y), 1.0 manifold'],
    ]) {
      const r = await send(`${gw.url}/x`, { headers });
      assert.equal(r.status, 508, `${headers.join(' ')}: ${r.text}`);
      assert.equal(r.json<{ error: { code: string } }>().error.code, 'LOOP_DETECTED');
    }
    assert.equal(up.requests.length, before);
    // One of ours (another Manifold in front) and other proxies' entries pass.
    const ok = await send(`${gw.url}/x`, { headers: ['via', '1.1 manifold, 1.1 squid, 1.1 manifoldx'] });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json<Record<string, string>>().via, '1.1 manifold, 1.1 squid, 1.1 manifoldx, 1.1 manifold');
  });

  test('a pool pointing at the gateway itself ends after a few hops with 508', async () => {
    const r = await send(`${gw.url}/self/x`);
    assert.equal(r.status, 508, r.text);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'LOOP_DETECTED');
    assert.ok(loop.connections <= 3, `${loop.connections} hops`);
  });
});

describe('issue 15 item 10: forwarding.via and loop_limit are configurable', () => {
  let up: Upstream;
  let gw: Gateway;
  before(async () => {
    up = await startUpstream((req, res) => res.end(JSON.stringify(req.headers)));
    gw = await startGateway(`
log: { level: warn, access: false }
forwarding: { via: edge-7, loop_limit: 1 }
pools: { up: { targets: [${up.url}] } }
routes: [{ match: { path: /* }, proxy: { pool: up } }]
`);
  });
  after(async () => {
    await gw.close();
    await up.close();
  });

  test('the pseudonym is ours on both sides; one entry of it is a loop at limit 1', async () => {
    const r = await send(`${gw.url}/x`, { headers: ['via', '1.1 manifold'] });
    assert.equal(r.status, 200);
    assert.equal(r.json<Record<string, string>>().via, '1.1 manifold, 1.1 edge-7');
    assert.equal(r.headers.via, '1.1 edge-7');
    const loop = await send(`${gw.url}/x`, { headers: ['via', '1.1 EDGE-7'] });
    assert.equal(loop.status, 508);
  });
});

/** A gateway on a dual-stack listener: startGateway forces 127.0.0.1. */
async function dualStackGateway(yaml: string): Promise<{ runtime: Runtime; port: number; logs: LogCapture }> {
  const { config } = loadConfigText(yaml, 'test.yaml', {
    env: {},
    overrides: [
      { path: ['listen', 'port'], value: 0, source: 'test' },
      { path: ['listen', 'host'], value: '::', source: 'test' },
    ],
  });
  const logs = new LogCapture();
  const runtime = await startRuntime(config, createLogger(config.log.level, logs));
  return { runtime, port: runtime.port, logs };
}

describe('issue 15 item 11: client address and Forwarded', () => {
  let up: Upstream;
  let gw: Awaited<ReturnType<typeof dualStackGateway>>;
  let plain: Gateway;
  let url: string;
  const seen = (r: { text: string }) => JSON.parse(r.text) as Record<string, string>;
  before(async () => {
    up = await startUpstream((req: IncomingMessage, res) =>
      res.end(JSON.stringify({ ...req.headers, peer: req.socket.remoteAddress })),
    );
    gw = await dualStackGateway(`
log: { level: warn, access: false }
forwarding: { forwarded: true }
pools:
  up: { targets: [${up.url}] }
  hashed: { targets: [${up.url}], selector: hash, hash_key: client_ip }
routes:
  - { match: { path: /h/* }, proxy: { pool: hashed } }
  - { match: { path: /* }, proxy: { pool: up } }
`);
    url = `http://127.0.0.1:${gw.port}`;
    plain = await startGateway(`
log: { level: warn, access: false }
pools: { up: { targets: [${up.url}] } }
routes: [{ match: { path: /* }, proxy: { pool: up } }]
`);
  });
  after(async () => {
    await gw.runtime.close(1000, 0);
    await plain.close();
    await up.close();
  });

  test('dual-stack listener: X-Forwarded-For and Forwarded record 127.0.0.1, not ::ffff:127.0.0.1', async () => {
    for (const path of ['/x', '/h/x']) {
      const r = await send(`${url}${path}`, { headers: ['x-forwarded-for', '10.0.0.1'] });
      assert.equal(r.status, 200, r.text);
      const h = seen(r);
      assert.equal(h['x-forwarded-for'], '10.0.0.1, 127.0.0.1');
      assert.equal(h.forwarded, `for=127.0.0.1;proto=http;host="127.0.0.1:${gw.port}"`);
    }
  });

  test("a client's own Forwarded is appended to, not passed untouched", async () => {
    const r = await send(`${plain.url}/x`, { headers: ['forwarded', 'for=6.6.6.6;proto=https'] });
    assert.equal(seen(r).forwarded, `for=6.6.6.6;proto=https, for=127.0.0.1;proto=http;host="127.0.0.1:${plain.port}"`);
    // Without forwarding.forwarded and without the client's, none is added.
    const none = await send(`${plain.url}/x`);
    assert.equal(seen(none).forwarded, undefined);
  });
});

/** A target that answers every request with `answer` as raw bytes (malformed on purpose). */
async function rawTarget(answer: (request: string) => string | null): Promise<{ server: NetServer; url: string }> {
  const server = createNetServer((socket) => {
    let got = '';
    socket.on('error', () => socket.destroy());
    socket.on('data', (c) => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      const out = answer(got);
      got = '';
      if (out !== null) socket.write(out);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

const chunkedAnswer = (te: string) =>
  `HTTP/1.1 200 OK\r\nTransfer-Encoding: ${te}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`;

describe('issue 15 item 12: strict about what targets answer', () => {
  const targets: Array<{ server: NetServer; url: string }> = [];
  let gw: Gateway;
  before(async () => {
    const answers: Record<string, (request: string) => string | null> = {
      double: () => chunkedAnswer('chunked, gzip, chunked'),
      xchunked: () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\nhello',
      gzip: () => chunkedAnswer('gzip, chunked'),
      twice: () => chunkedAnswer('chunked\r\nTransfer-Encoding: chunked'),
      ok: () => chunkedAnswer('Chunked'),
      badchunk: () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
      noupgrade: () => 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n',
      continue: () => `HTTP/1.1 100 Continue\r\n\r\n${chunkedAnswer('chunked')}`,
      h2c: () => 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n',
      twoupgrades: () =>
        'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nUpgrade: websocket\r\n\r\n',
    };
    const pools: string[] = [];
    const routes: string[] = [];
    for (const [name, answer] of Object.entries(answers)) {
      const t = await rawTarget(answer);
      targets.push(t);
      pools.push(`  ${name}: { targets: [${t.url}] }`);
      routes.push(`  - { match: { path: /${name} }, proxy: { pool: ${name} } }`);
    }
    gw = await startGateway(`
log: { level: warn, access: false }
pools:
${pools.join('\n')}
routes:
${routes.join('\n')}
`);
  });
  after(async () => {
    await gw.close();
    for (const t of targets) t.server.close();
  });

  test('a transfer coding other than one chunked: 502 TARGET_PROTOCOL, never relayed as identity', async () => {
    for (const name of ['double', 'xchunked', 'gzip', 'twice']) {
      const r = await send(`${gw.url}/${name}`);
      assert.equal(r.status, 502, `${name}: ${r.status} ${r.text}`);
      assert.equal(r.json<{ error: { code: string } }>().error.code, 'TARGET_PROTOCOL', name);
    }
    const ok = await send(`${gw.url}/ok`);
    assert.equal(ok.status, 200);
    assert.equal(ok.text, 'hello');
  });

  test('a bad chunk size in the first read: a 502 JSON, not a cut connection', async () => {
    const r = await send(`${gw.url}/badchunk`);
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json<{ error: { code: string } }>().error.code, 'TARGET_PROTOCOL');
  });

  test('an unexpected 100 Continue is passed over: the final answer is relayed (issue-15-continue.test.ts has the rest)', async () => {
    const r = await send(`${gw.url}/continue`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, 'hello');
  });

  test('WebSocket: a 101 without Upgrade, or to another protocol, is a 502, not relayed', async () => {
    for (const name of ['noupgrade', 'h2c']) {
      const raw = await sendRaw(
        gw.port,
        `GET /${name} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      );
      assert.match(raw, /^HTTP\/1\.1 502 /, `${name}: ${raw}`);
      assert.match(raw, /TARGET_PROTOCOL/);
    }
  });

  test('WebSocket: of several Upgrade fields in a 101, the one checked is the one the client is told', async () => {
    // The last field is checked against what was asked (websocket): the tunnel's 101 names it too.
    const socket = connect(gw.port, '127.0.0.1');
    socket.write(
      'GET /twoupgrades HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    let head = '';
    for await (const chunk of socket) {
      head += (chunk as Buffer).toString('latin1');
      if (head.includes('\r\n\r\n')) break;
    }
    socket.destroy();
    assert.match(head, /^HTTP\/1\.1 101 /, head);
    const upgrades = head.split('\r\n').filter((l) => /^upgrade:/i.test(l));
    assert.deepEqual(upgrades.map((l) => l.slice(l.indexOf(':') + 1).trim()), ['websocket'], head);
  });
});

describe('issue 15: WebSocket tunnel idle timeout and shutdown', () => {
  let up: Upstream;
  let wss: WebSocketServer;
  const serverSide: WebSocket[] = [];
  before(async () => {
    up = await startUpstream();
    wss = new WebSocketServer({ noServer: true });
    up.server.on('upgrade', (req, socket, head) =>
      wss.handleUpgrade(req, socket, head, (ws) => {
        serverSide.push(ws);
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        if (req.url === '/stream') {
          // The target keeps talking: frames in flight when the grace ends.
          const big = Buffer.alloc(64 * 1024, 1);
          const timer = setInterval(() => ws.send(big), 5);
          ws.on('close', () => clearInterval(timer));
        }
      }),
    );
  });
  after(async () => {
    wss.close();
    await up.close();
  });

  const gateway = (extra: string) =>
    startGateway(`
log: { level: warn, access: false }
pools: { ws: { targets: [${up.url}] } }
routes: [{ match: { path: /* }, proxy: { pool: ws }${extra} }]
`);

  test('a tunnel with no byte either way for tunnel_idle_timeout is closed, both sides', async () => {
    const gw = await gateway(', tunnel_idle_timeout: 300ms');
    try {
      const before = serverSide.length;
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/idle`);
      await once(ws, 'open');
      const server = await until(() => serverSide[before], 'server side');
      const serverClosed = once(server, 'close');
      ws.send('hi');
      await once(ws, 'message');
      // Then nothing: the gateway cuts it (without the key it stays open: the until below fails).
      await until(() => ws.readyState === WebSocket.CLOSED, 'idle tunnel closed', 5000);
      await serverClosed;
    } finally {
      await gw.close();
    }
  });

  test('traffic keeps a tunnel open past tunnel_idle_timeout', async () => {
    const gw = await gateway(', tunnel_idle_timeout: 1s');
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/busy`);
      await once(ws, 'open');
      let echoes = 0;
      ws.on('message', () => echoes++);
      // 20 round trips, one after another, with 100 ms between them: well past 1 s in all.
      for (let i = 0; i < 20; i++) {
        ws.send(`ping ${i}`);
        await until(() => echoes > i, `echo ${i}`);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(ws.readyState, WebSocket.OPEN, `open after ${i + 1} pings`);
      }
      ws.close();
      await once(ws, 'close');
    } finally {
      await gw.close();
    }
  });

  test('shutdown: open WebSockets get a close frame 1001 at the end of the grace, not 1006', async () => {
    const gw = await gateway('');
    const quiet = new WebSocket(`ws://127.0.0.1:${gw.port}/quiet`);
    const busy = new WebSocket(`ws://127.0.0.1:${gw.port}/stream`);
    await Promise.all([once(quiet, 'open'), once(busy, 'open')]);
    let streamed = 0;
    busy.on('message', () => streamed++);
    await until(() => streamed > 3, 'target streaming');
    const codes = Promise.all([quiet, busy].map((ws) => once(ws, 'close').then(([code]) => code as number)));
    // A frame cut in the middle would be a protocol error on the client (1002/1006), not 1001.
    const errors: Error[] = [];
    for (const ws of [quiet, busy]) ws.on('error', (e) => errors.push(e));
    const stopping = gw.runtime.close(300, 0);
    assert.deepEqual(await codes, [1001, 1001]);
    assert.deepEqual(errors, []);
    await stopping;
  });
});

describe('issue 15: FrameBoundary follows WebSocket frames', () => {
  const frame = (payload: number, masked = false) => {
    const len = payload < 126 ? [payload] : payload < 65536 ? [126, payload >> 8, payload & 255] : [127, 0, 0, 0, 0, 0, payload >> 16, (payload >> 8) & 255, payload & 255];
    if (masked) len[0] |= 0x80;
    return Buffer.concat([Buffer.from([0x82, ...len]), Buffer.alloc(masked ? 4 : 0), Buffer.alloc(payload, 9)]);
  };
  test('boundaries are found across any split of frames of every header size', () => {
    const stream = Buffer.concat([frame(0), frame(5), frame(200), frame(70000), frame(3, true), frame(125)]);
    const ends: number[] = [];
    let off = 0;
    for (const f of [frame(0), frame(5), frame(200), frame(70000), frame(3, true), frame(125)]) ends.push((off += f.length));
    for (const step of [1, 2, 3, 7, 13, 1000, stream.length]) {
      const fb = new FrameBoundary();
      for (let at = 0; at < stream.length; at += step) {
        fb.feed(stream.subarray(at, at + step));
        const pos = Math.min(at + step, stream.length);
        assert.equal(fb.atBoundary, ends.includes(pos), `step ${step} at ${pos}`);
      }
    }
  });
  test('untilBoundary gives the bytes that finish the current frame', () => {
    const fb = new FrameBoundary();
    const two = Buffer.concat([frame(10), frame(10)]);
    fb.feed(two.subarray(0, 5));
    assert.equal(fb.untilBoundary(two.subarray(5)), 7);
    assert.equal(fb.atBoundary, true);
    assert.equal(fb.untilBoundary(Buffer.alloc(3)), 0);
  });
});
