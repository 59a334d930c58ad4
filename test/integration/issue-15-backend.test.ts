/**
 * Issue 15, "should fix" items 10-12 and the WebSocket bullet: what the gateway adds to and
 * refuses from what it forwards and what its targets answer.
 * - 10: a request carrying `forwarding.loop_limit` of our own Via entries is refused 508
 *   `LOOP_DETECTED`; a pool that points at the gateway itself ends after a few hops.
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
import { type Gateway, LogCapture, startGateway, startUpstream, type Upstream } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

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
