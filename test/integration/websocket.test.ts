/**
 * Issue #2 point 5: WebSocket / upgrade requests tunnelled full-duplex through the gateway;
 * either side closing closes the other.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import {
  deadAddress,
  type Gateway,
  startGateway,
  startUpstream,
  type Upstream,
  until,
} from '../helpers/index.ts';
import { sendRaw } from '../helpers/http.ts';
import { parseExposition, total } from '../helpers/prom.ts';

describe('websocket tunnel', () => {
  let up: Upstream;
  let wss: WebSocketServer;
  let gw: Gateway;
  const serverSide: WebSocket[] = [];
  before(async () => {
    up = await startUpstream((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain' });
      res.end('upgrade required');
    });
    wss = new WebSocketServer({ noServer: true });
    up.server.on('upgrade', (req, socket, head) => {
      if (req.url === '/refuse') {
        socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nno way!');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        serverSide.push(ws);
        ws.send(`hello ${req.headers['x-forwarded-for']} via ${req.headers.via}`);
        ws.on('message', (data, isBinary) => {
          if (data.toString() === 'close-please') ws.close(4001, 'server closing');
          else ws.send(data, { binary: isBinary });
        });
      });
    });
    const dead = await deadAddress();
    gw = await startGateway(`
pools:
  ws: { targets: [${up.url}] }
  dead: { targets: [${dead}] }
routes:
  - { match: { path: /dead }, proxy: { pool: dead } }
  - { match: { path: /* }, proxy: { pool: ws } }
`);
  });
  after(async () => {
    await gw.close();
    wss.close();
    await up.close();
  });

  const open = async (path = '/chat') => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}${path}`);
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(d.toString()));
    await once(ws, 'open');
    return { ws, messages };
  };

  test('echo in both directions, text and binary, with forwarding headers', async () => {
    const { ws, messages } = await open();
    await until(() => messages.length >= 1, 'greeting');
    assert.equal(messages[0], 'hello 127.0.0.1 via 1.1 manifold');
    ws.send('ping');
    const big = Buffer.alloc(256 * 1024, 7);
    ws.send(big);
    await until(() => messages.length >= 3, 'echoes');
    assert.equal(messages[1], 'ping');
    assert.equal(Buffer.byteLength(messages[2]), big.length);
    ws.close();
    await once(ws, 'close');
  });

  test('client closing closes the target side', async () => {
    const before = serverSide.length;
    const { ws } = await open();
    const server = await until(() => serverSide[before], 'server side');
    const closed = once(server, 'close');
    ws.terminate(); // abrupt: no close frame, just the TCP close
    await closed;
  });

  test('target closing closes the client side', async () => {
    const { ws } = await open();
    ws.send('close-please');
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    assert.equal(code, 4001);
    assert.equal(reason.toString(), 'server closing');
  });

  test('a target that refuses the upgrade has its answer relayed', async () => {
    const raw = await sendRaw(
      gw.port,
      'GET /refuse HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    assert.match(raw, /^HTTP\/1.1 403 /);
    assert.match(raw, /no way!$/);
  });

  test('an unreachable target → 502 JSON error on the socket', async () => {
    const raw = await sendRaw(
      gw.port,
      'GET /dead HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    assert.match(raw, /^HTTP\/1.1 502 /);
    assert.match(raw, /"code":"TARGET_UNREACHABLE"/);
  });

  test('issue 7: tunnels are counted by their status, but add nothing to the duration histogram', async () => {
    const { ws } = await open();
    ws.close();
    await once(ws, 'close');
    const m = () => gw.runtime.metrics!.registry.metrics().then(parseExposition);
    // Counted when the tunnel ends, which the gateway sees just after the client.
    const s = await until(async () => {
      const x = await m();
      return total(x, 'manifold_downstream_requests_total', { route: 'route-1', status_class: '1xx' }) >= 4
        ? x
        : null;
    }, 'the tunnels counted');
    assert.equal(
      total(s, 'manifold_downstream_requests_total', { route: 'route-1', status_class: '4xx' }),
      1,
    );
    assert.equal(
      total(s, 'manifold_downstream_requests_total', { route: 'route-0', status_class: '5xx' }),
      1,
    );
    assert.equal(total(s, 'manifold_downstream_request_duration_seconds_count', { route: 'route-1' }), 0);
  });
});
