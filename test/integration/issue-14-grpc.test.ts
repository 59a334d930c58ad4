/**
 * Issue 14 item 5: gRPC end to end. A @grpc/grpc-js client calls through Manifold (an h2c
 * listener, and once a TLS h2 listener with a test certificate) to a @grpc/grpc-js server
 * (h2c) behind a pool with `http2: true`: the four call kinds, trailers, grpc-timeout, gateway
 * errors as gRPC statuses, metadata both ways. And item 4's h2c to plain targets: a node:http2
 * server that speaks only h2c, reached by proxy traffic and the pool's health checks.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, constants, createServer as createH2cServer, type Http2Server } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { type Gateway, startGateway, until } from '../helpers/index.ts';
import { testCa } from '../helpers/certs.ts';
import { startManaged } from './admin-gateway.ts';
import {
  chat,
  clientStream,
  echoClient,
  type EchoClient,
  type EchoServer,
  grpc,
  serverStream,
  startEchoServer,
  unary,
} from '../helpers/grpc.ts';

function meta(client: EchoClient): Promise<{ answer: string; header: unknown; trailer: unknown }> {
  return new Promise((resolve, reject) => {
    const md = new grpc.Metadata();
    md.set('x-custom', 'from-client');
    let header: unknown;
    const call = client.Meta('m', md, (err: grpc.ServiceError | null, answer: string) => {
      if (err) reject(err);
      else call.on('status', (s: grpc.StatusObject) => resolve({ answer, header, trailer: s.metadata.get('x-trailer')[0] }));
    }) as grpc.ClientUnaryCall;
    call.on('metadata', (m: grpc.Metadata) => (header = m.get('x-reply')[0]));
  });
}

async function rejects(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  assert.fail('the call succeeded');
}

describe('issue 14: gRPC through Manifold (HTTP/2 both ways)', () => {
  let server: EchoServer;
  let gw: Gateway;
  let client: EchoClient;
  let tlsClient: EchoClient;
  before(async () => {
    server = await startEchoServer();
    const ca = testCa();
    const site = ca.issue('localhost');
    gw = await startGateway(`
listeners:
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
  - { name: tls, host: 127.0.0.1, port: 0, http2: true, tls: { cert: ${site.cert}, key: ${site.key} } }
pools:
  grpc: { targets: ["http://127.0.0.1:${server.port}"], http2: true }
  none: { targets: [{ url: "http://127.0.0.1:${server.port}", drain: true }], http2: true }
routes:
  - { match: { path: /test.Echo/* }, proxy: { pool: grpc }, timeout: 30s }
  - { match: { path: /none.Echo/* }, proxy: { pool: none } }
`);
    client = echoClient(`127.0.0.1:${gw.ports.h2c}`);
    tlsClient = echoClient(
      `localhost:${gw.ports.tls}`,
      grpc.credentials.createSsl(Buffer.from(ca.pem)),
    );
  });
  after(async () => {
    client?.close();
    tlsClient?.close();
    await gw?.close();
    await server?.close();
  });

  test('unary, over h2c and over TLS h2', async () => {
    assert.equal(await unary(client, 'Unary', 'hello'), 'echo:hello');
    assert.equal(await unary(tlsClient, 'Unary', 'secure'), 'echo:secure');
  });

  test('server streaming: many messages, in order', async () => {
    const got = await serverStream(client, 500);
    assert.equal(got.length, 500);
    assert.equal(got[0], 'n1');
    assert.equal(got[499], 'n500');
  });

  test('client streaming', async () => {
    assert.equal(await clientStream(client, ['a', 'b', 'c']), 'a+b+c');
    assert.equal(await clientStream(tlsClient, ['x', 'y']), 'x+y');
  });

  test('bidirectional: each message sent only after the answer to the previous one', async () => {
    const messages = Array.from({ length: 20 }, (_, i) => `m${i}`);
    // Would hang (then time out) if the gateway waited for the request body's end.
    assert.deepEqual(await chat(client, messages), messages.map((m) => `re:${m}`));
    assert.deepEqual(await chat(tlsClient, ['one', 'two']), ['re:one', 're:two']);
  });

  test('a strategy that may replay (failover) does not hold a bidirectional stream back', async () => {
    const failover = await startGateway(`
listeners:
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
pools:
  grpc: { targets: ["http://127.0.0.1:${server.port}"], http2: true }
routes:
  - { match: { path: /test.Echo/* }, proxy: { pool: grpc, strategy: failover, max_replay_bytes: 1MiB } }
`);
    const c = echoClient(`127.0.0.1:${failover.ports.h2c}`);
    try {
      assert.deepEqual(await chat(c, ['a', 'b', 'c']), ['re:a', 're:b', 're:c']);
      assert.equal(await unary(c, 'Unary', 'once'), 'echo:once');
    } finally {
      c.close();
      await failover.close();
    }
  });

  test("the target's status and details travel in trailers", async () => {
    const err = await rejects(unary(client, 'Fail', 'x'));
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(err.details, 'no such thing');
  });

  test('metadata: a request header reaches the server; a response header and a trailer reach the client', async () => {
    assert.deepEqual(await meta(client), { answer: 'custom:from-client', header: 'from-server', trailer: 'at-the-end' });
  });

  test('grpc-timeout: a 200 ms deadline on a 5 s call ends as DEADLINE_EXCEEDED, and the attempt ends', async () => {
    const started = Date.now();
    const err = await rejects(unary(client, 'Slow', '5000', 200));
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(Date.now() - started < 4000, 'not the 5 s answer nor the 30 s route timeout');
    // The gateway ended its attempt: its access line is written (it would wait for the answer).
    // Whichever ended first, the client's cancel or the gateway's grpc-timeout, it was early.
    const line = await until(
      () => gw.logs.access().find((l) => String(l.url).endsWith('/Slow')),
      'the access line of Slow',
      4000,
    );
    assert.ok(Number(line.duration_ms) < 4000);
  });

  test('grpc-timeout alone (a client that does not cancel): the gateway answers DEADLINE_EXCEEDED', async () => {
    const session = connect(`http://127.0.0.1:${gw.ports.h2c}`);
    after(() => session.close());
    const stream = session.request({
      ':method': 'POST',
      ':path': '/test.Echo/Slow',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '200m',
    });
    const message = Buffer.from('5000');
    stream.end(Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]));
    const [headers, flags] = (await once(stream, 'response')) as [Record<string, string>, number];
    assert.equal(headers[':status'], 200);
    assert.equal(headers['grpc-status'], '4');
    assert.equal(headers['x-manifold-error'], 'TARGET_TIMEOUT');
    assert.ok(flags & constants.NGHTTP2_FLAG_END_STREAM, 'trailers-only: the HEADERS frame ends the stream');
  });

  test('a pool with no available target: UNAVAILABLE', async () => {
    const err = await rejects(unary(echoClientAt(gw.ports.h2c, '/none.Echo/Unary'), 'Unary', 'x'));
    assert.equal(err.code, grpc.status.UNAVAILABLE);
    assert.match(err.details, /NO_TARGET_AVAILABLE/);
  });

  test('no route: UNIMPLEMENTED', async () => {
    const err = await rejects(unary(echoClientAt(gw.ports.h2c, '/other.Echo/Unary'), 'Unary', 'x'));
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
    assert.match(err.details, /ROUTE_NOT_FOUND/);
  });
});

/** A client whose Unary method is sent to another path (another service name). */
function echoClientAt(port: number, path: string): EchoClient {
  const Client = grpc.makeGenericClientConstructor(
    {
      Unary: {
        path,
        requestStream: false,
        responseStream: false,
        requestSerialize: (s: string) => Buffer.from(s),
        requestDeserialize: (b: Buffer) => b.toString(),
        responseSerialize: (s: string) => Buffer.from(s),
        responseDeserialize: (b: Buffer) => b.toString(),
      },
    },
    'Other',
  );
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as EchoClient;
  after(() => c.close());
  return c;
}

describe('issue 14 item 4: h2c to plain targets with pools.<name>.http2', () => {
  let target: Http2Server;
  let port = 0;
  const seen: Array<{ path: string; version: string }> = [];
  before(async () => {
    // h2c only: an HTTP/1.1 request to it fails, so a 200 proves HTTP/2 was spoken.
    target = createH2cServer((req, res) => {
      seen.push({ path: req.url, version: req.httpVersion });
      res.end(`h2c ${req.httpVersion}`);
    });
    target.listen(0, '127.0.0.1');
    await once(target, 'listening');
    port = (target.address() as { port: number }).port;
  });
  after(() => target.close());

  test('proxied requests and health checks speak HTTP/2 with prior knowledge', async () => {
    const gw = await startManaged(
      `
workers: 0
log: { level: info, access: false }
pools:
  h2c:
    targets: ["http://127.0.0.1:${port}"]
    http2: true
    health: { path: /health, interval: 50ms, timeout: 2s, fall: 1, rise: 1 }
  h1:
    targets: ["http://127.0.0.1:${port}"]
    health: { path: /health-h1, interval: 50ms, timeout: 2s, fall: 1, rise: 1 }
routes:
  - { match: { path: /h1/* }, proxy: { pool: h1 } }
  - { match: { path: /* }, proxy: { pool: h2c } }
`,
      0,
    );
    after(() => gw.close());
    const r = await gw.get('/x');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'h2c 2.0');
    type View = { pool: string; state: string };
    const state = async (pool: string) =>
      (await gw.admin('GET', '/stats/detail')).json<View[]>().find((t) => t.pool === pool)?.state;
    // Without `http2: true` the same target is spoken to in HTTP/1.1, which it refuses.
    await until(async () => (await state('h1')) === 'down', 'the HTTP/1.1 pool to be down');
    assert.equal(await state('h2c'), 'up');
    assert.ok(seen.some((s) => s.path === '/health' && s.version === '2.0'), 'checked over h2c');
    assert.ok(!seen.some((s) => s.path === '/health-h1'), 'an HTTP/1.1 check never reached the h2c-only target');
  });
});
