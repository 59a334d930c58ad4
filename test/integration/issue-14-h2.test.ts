/**
 * Issue 14, item 3: HTTP/2 inbound. Over TLS (ALPN h2 next to http/1.1) and h2c with prior
 * knowledge on a plain listener (HTTP/1.1 still served on that port): bodies stream both ways,
 * pseudo-headers become Host and never reach a target, every route action answers as over
 * HTTP/1.1, the limits are HTTP/2 settings, a drain is a GOAWAY.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { testCa } from '../helpers/certs.ts';
import { send } from '../helpers/http.ts';
import { closeAfter, deadAddress, proxyAll, scratch, startGateway, startUpstream, until, type Upstream } from '../helpers/index.ts';

const run = promisify(execFile);
const ca = testCa();
const site = ca.issue('h2.test');

interface H2Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function h2(session: ClientHttp2Session, headers: OutgoingHttpHeaders, body?: string | Buffer): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    const chunks: Buffer[] = [];
    let head: IncomingHttpHeaders = {};
    stream.on('response', (h) => (head = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body);
  });
}

/**
 * Streams `total` bytes up in 64 KiB chunks, the first alone until its echo comes back (so
 * neither direction is buffered whole), and returns the SHA-256 of what was sent and received.
 */
async function echoBothWays(session: ClientHttp2Session, total: number): Promise<{ sent: string; got: string; status: number }> {
  const stream = session.request({ ':method': 'POST', ':path': '/echo' });
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let received = 0;
  let status = 0;
  stream.on('response', (h) => (status = Number(h[':status'])));
  stream.on('data', (c: Buffer) => {
    got.update(c);
    received += c.length;
  });
  const chunk = (i: number) => Buffer.alloc(65536, i % 251);
  const first = chunk(0);
  sent.update(first);
  stream.write(first);
  await until(() => received > 0, 'the first chunk echoed back before the rest is sent');
  for (let i = 1, n = Math.ceil(total / 65536); i < n; i++) {
    const c = chunk(i);
    sent.update(c);
    if (!stream.write(c)) await once(stream, 'drain');
  }
  stream.end();
  await once(stream, 'end');
  assert.equal(received, Math.ceil(total / 65536) * 65536);
  return { sent: sent.digest('hex'), got: got.digest('hex'), status };
}

function echoUpstream(): Promise<Upstream> {
  return startUpstream((req, res) => {
    if (req.url === '/echo') {
      res.writeHead(200, { 'x-seen': JSON.stringify(req.headers), 'content-type': 'application/octet-stream' });
      res.flushHeaders();
      req.pipe(res);
      return;
    }
    if (req.url?.startsWith('/hook')) {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
      return;
    }
    res.setHeader('x-seen', JSON.stringify(req.headers));
    res.end(`hello ${req.method} ${req.url}`);
  });
}

describe('issue 14: HTTP/2 over TLS and h2c', async () => {
  const upstream = await echoUpstream();
  const dead = await deadAddress();
  const dir = scratch('manifold-h2-');
  const gw = await startGateway(`
listeners:
  - name: tls
    host: 127.0.0.1
    port: 0
    http2: true
    tls: { cert: ${site.cert}, key: ${site.key} }
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
limits:
  http2_max_concurrent_streams: 7
  http2_max_header_list_size: 20KiB
queue: { driver: sqlite, path: ${join(dir.dir, 'queue.db')} }
pools:
  app: { targets: ["${upstream.url}"] }
  twice: { targets: ["${dead}", "${upstream.url}"] }
routes:
  - id: hello
    match: { path: /respond }
    respond: { status: 200, body: "answered here", headers: { x-kind: respond } }
  - id: failover
    match: { path: /failover }
    proxy: { pool: twice, strategy: failover }
  - id: hooks
    match: { path: /hook/* }
    defer: { pool: app }
  - id: batch
    match: { path: /multiplex, methods: [POST] }
    multiplex: { allow: [127.0.0.0/8] }
  - id: app
    match: { path: /* }
    proxy: { pool: app }
`);
  closeAfter(gw, upstream);
  const tlsSession = () => connect(`https://127.0.0.1:${gw.ports.tls}`, { ca: ca.pem, servername: 'h2.test' });
  const h2cSession = () => connect(`http://127.0.0.1:${gw.ports.h2c}`);
  const sessions: ClientHttp2Session[] = [];
  const open = (make: () => ClientHttp2Session) => {
    const s = make();
    sessions.push(s);
    return s;
  };
  after(() => {
    for (const s of sessions) s.destroy();
  });

  test('over TLS: ALPN h2, a 4 MiB body streamed both ways, unchanged', async () => {
    const s = open(tlsSession);
    await once(s, 'connect');
    assert.equal((s.socket as import('node:tls').TLSSocket).alpnProtocol, 'h2');
    const r = await echoBothWays(s, 4 << 20);
    assert.equal(r.status, 200);
    assert.equal(r.got, r.sent);
  });

  test('h2c with prior knowledge: the same, on a plain listener', async () => {
    const s = open(h2cSession);
    const r = await echoBothWays(s, 2 << 20);
    assert.equal(r.status, 200);
    assert.equal(r.got, r.sent);
  });

  test('pseudo-headers become Host and never reach the target; x-forwarded-proto per listener', async () => {
    for (const [make, proto] of [[tlsSession, 'https'], [h2cSession, 'http']] as const) {
      const s = open(make);
      const r = await h2(s, { ':path': '/seen?x=1', ':authority': 'Shop.Example:443', cookie: 'a=1', 'x-test': 'y' });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'hello GET /seen?x=1');
      const seen = JSON.parse(String(r.headers['x-seen'])) as Record<string, string>;
      assert.equal(seen.host, 'Shop.Example:443');
      assert.equal(seen['x-forwarded-proto'], proto);
      assert.equal(seen['x-forwarded-host'], 'Shop.Example:443');
      assert.equal(seen['x-test'], 'y');
      assert.equal(seen['x-forwarded-for'], '127.0.0.1');
      // Via names the protocol the request was received with (RFC 9110 §7.6.3).
      assert.equal(seen.via, '2 manifold');
      assert.equal(seen.cookie, 'a=1');
      assert.deepEqual(Object.keys(seen).filter((k) => k.startsWith(':')), []);
      // No connection-specific header in the answer (RFC 9113 §8.2.2), the gateway's own ones are there.
      assert.equal(r.headers.connection, undefined);
      assert.equal(r.headers['keep-alive'], undefined);
      assert.equal(typeof r.headers['x-request-id'], 'string');
      assert.equal(r.headers['x-manifold-target'], `127.0.0.1:${upstream.port}`);
    }
  });

  test('HTTP/1.1 still works on both: ALPN http/1.1 on TLS, first bytes on h2c', async () => {
    const { request } = await import('node:https');
    const viaTls = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gw.ports.tls, path: '/x', ca: ca.pem, servername: 'h2.test', agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.deepEqual(viaTls, { status: 200, body: 'hello GET /x' });
    const plain = await send(`http://127.0.0.1:${gw.ports.h2c}/y`, { method: 'POST', body: 'x'.repeat(70000) });
    assert.equal(plain.status, 200);
    assert.equal(plain.text, 'hello POST /y');
  });

  test('curl --http2 (TLS) and --http2-prior-knowledge (h2c) speak HTTP/2', async () => {
    const tls = await run('curl', [
      '-sS', '--http2', '--cacert', ca.file, '--resolve', `h2.test:${gw.ports.tls}:127.0.0.1`,
      '-w', '\n%{http_version} %{http_code}', `https://h2.test:${gw.ports.tls}/curl`,
    ]);
    assert.equal(tls.stdout, 'hello GET /curl\n2 200');
    const h2c = await run('curl', ['-sS', '--http2-prior-knowledge', '-w', '\n%{http_version} %{http_code}', '--data-binary', 'abc', `http://127.0.0.1:${gw.ports.h2c}/echo`]);
    assert.equal(h2c.stdout, 'abc\n2 200');
    const h1 = await run('curl', ['-sS', '--http1.1', '-w', '\n%{http_version}', `http://127.0.0.1:${gw.ports.h2c}/one`]);
    assert.equal(h1.stdout, 'hello GET /one\n1.1');
  });

  test('every route action over HTTP/2: respond, errors, failover, multiplex, defer', async () => {
    const s = open(h2cSession);
    const answered = await h2(s, { ':path': '/respond' });
    assert.equal(answered.status, 200);
    assert.equal(answered.body.toString(), 'answered here');
    assert.equal(answered.headers['x-kind'], 'respond');
    const refused = await h2(s, { ':path': '/../etc' });
    assert.equal(refused.status, 400);
    assert.equal(refused.headers['content-type'], 'application/json');
    assert.equal(JSON.parse(refused.body.toString()).error.code, 'BAD_REQUEST');
    const failover = await h2(s, { ':path': '/failover' });
    assert.equal(failover.status, 200);
    assert.equal(failover.body.toString(), 'hello GET /failover');
    const batch = await h2(
      s,
      { ':method': 'POST', ':path': '/multiplex', 'content-type': 'application/json' },
      JSON.stringify({ requests: [{ uri: `${upstream.url}/a` }, { uri: `${upstream.url}/b` }] }),
    );
    assert.equal(batch.status, 200);
    const responses = JSON.parse(batch.body.toString()).responses as Array<{ status: number; body: string }>;
    assert.deepEqual(responses.map((r) => r.status), [200, 200]);
    const deferred = await h2(s, { ':method': 'POST', ':path': '/hook/1' }, 'x'.repeat(1000));
    assert.equal(deferred.status, 202);
    assert.match(JSON.parse(deferred.body.toString()).id, /\S/);
    await until(() => upstream.requests.some((q) => q.url === '/hook/1'), 'the deferred request delivered');
  });

  test('Expect: 100-continue over HTTP/2: 100 once the body is read, then the answer', async () => {
    const s = open(tlsSession);
    const stream = s.request({ ':method': 'POST', ':path': '/echo', expect: '100-continue' }, { endStream: false });
    await once(stream, 'continue');
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.end('after continue');
    await once(stream, 'end');
    assert.equal(Buffer.concat(chunks).toString(), 'after continue');
  });

  test('the limits are HTTP/2 settings', async () => {
    const s = open(h2cSession);
    await once(s, 'remoteSettings');
    assert.equal(s.remoteSettings.maxConcurrentStreams, 7);
    assert.equal(s.remoteSettings.maxHeaderListSize, 20 * 1024);
  });
});

describe('issue 14: an HTTP/2 drain', async () => {
  let release = false;
  const upstream = await startUpstream((_req, res) => {
    res.write('start;');
    const t = setInterval(() => {
      if (!release) return;
      clearInterval(t);
      res.end('end');
    }, 10);
  });
  const gw = await startGateway(`
listeners:
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
${proxyAll(upstream.url)}`);
  after(() => upstream.close());

  test('GOAWAY at the start of the drain; the stream in flight finishes', async () => {
    const s = connect(`http://127.0.0.1:${gw.ports.h2c}`);
    after(() => s.destroy());
    const stream = s.request({ ':path': '/long' });
    let body = '';
    stream.on('data', (c: Buffer) => (body += c));
    await until(() => body === 'start;', 'the first chunk');
    let goaway = false;
    s.on('goaway', () => (goaway = true));
    const closing = gw.runtime.close(5000, 0);
    await until(() => goaway, 'GOAWAY');
    release = true;
    await once(stream, 'end');
    assert.equal(body, 'start;end');
    await closing;
  });
});

describe('issue 14: HTTP/2 timeouts', async () => {
  const upstream = await echoUpstream();
  const gw = await startGateway(`
listeners:
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
limits: { keep_alive_timeout: 200ms, request_timeout: 300ms, headers_timeout: 300ms }
${proxyAll(upstream.url)}`);
  closeAfter(gw, upstream);

  test('limits.keep_alive_timeout closes a connection with no open stream (GOAWAY)', async () => {
    const s = connect(`http://127.0.0.1:${gw.ports.h2c}`);
    after(() => s.destroy());
    assert.equal((await h2(s, { ':path': '/one' })).status, 200);
    await once(s, 'goaway');
    await once(s, 'close');
  });

  test('limits.request_timeout: a request body that never ends gets 408', async () => {
    const s = connect(`http://127.0.0.1:${gw.ports.h2c}`);
    after(() => s.destroy());
    const stream = s.request({ ':method': 'POST', ':path': '/hook' }, { endStream: false });
    stream.write('part of a body');
    const [head] = (await once(stream, 'response')) as [IncomingHttpHeaders];
    assert.equal(head[':status'], 408);
  });
});

describe('issue 14: a drain covers every listener', async () => {
  const gw = await startGateway(`
listeners:
  - { name: a, host: 127.0.0.1, port: 0 }
  - { name: b, host: 127.0.0.1, port: 0, http2: true }
routes:
  - match: { path: /ready }
    respond: { status: 200, ready: true }
`);

  test('every listener stops accepting; keep-alive connections on each get NOT_READY meanwhile', async () => {
    const { Agent, request } = await import('undici');
    const agent = new Agent({ keepAliveTimeout: 10_000 });
    after(() => agent.close());
    const get = async (port: number) => (await request(`http://127.0.0.1:${port}/ready`, { dispatcher: agent })).statusCode;
    assert.deepEqual([await get(gw.ports.a), await get(gw.ports.b)], [200, 200]);
    const closing = gw.runtime.close(2000, 1000);
    await until(async () => (await get(gw.ports.a)) === 503 && (await get(gw.ports.b)) === 503, 'NOT_READY on both');
    await closing;
    for (const port of [gw.ports.a, gw.ports.b]) await assert.rejects(send(`http://127.0.0.1:${port}/ready`), /ECONNREFUSED/);
  });
});

describe('issue 14: WebSocket stays on HTTP/1.1 on HTTP/2 listeners', async () => {
  const { WebSocket, WebSocketServer } = await import('ws');
  const up = await startUpstream((_req, res) => res.writeHead(426).end());
  const wss = new WebSocketServer({ noServer: true });
  up.server.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (d) => ws.send(`echo ${d.toString()} ${req.headers['x-forwarded-proto']}`))),
  );
  const gw = await startGateway(`
listeners:
  - { name: tls, host: 127.0.0.1, port: 0, http2: true, tls: { cert: ${site.cert}, key: ${site.key} } }
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
pools:
  ws: { targets: ["${up.url}"] }
routes:
  - match: {}
    proxy: { pool: ws }
`);
  after(async () => {
    await gw.close();
    wss.close();
    await up.close();
  });

  test('wss:// over the TLS listener and ws:// over the h2c one', async () => {
    for (const [url, proto] of [
      [`wss://127.0.0.1:${gw.ports.tls}/chat`, 'https'],
      [`ws://127.0.0.1:${gw.ports.h2c}/chat`, 'http'],
    ] as const) {
      // ws hands its options to tls.connect, servername included (its types leave it out).
      const ws = new WebSocket(url, { ca: ca.pem, servername: 'h2.test' } as import('ws').ClientOptions);
      await once(ws, 'open');
      ws.send('hi');
      const [data] = (await once(ws, 'message')) as [Buffer];
      assert.equal(data.toString(), `echo hi ${proto}`);
      ws.close();
      await once(ws, 'close');
    }
  });
});

describe('issue 14: a stream the client resets', () => {
  test('is logged 499 CLIENT_CLOSED and its attempt ends at the target', async () => {
    let closedAtTarget = false;
    const upstream = await startUpstream((req) => req.socket.once('close', () => (closedAtTarget = true)));
    const gw = await startGateway(`
log: { level: info }
listeners:
  - { name: h2c, host: 127.0.0.1, port: 0, http2: true }
${proxyAll(upstream.url)}`);
    try {
      const session = connect(`http://127.0.0.1:${gw.runtime.ports.h2c}`);
      const stream = session.request({ ':path': '/hang' });
      stream.on('error', () => {});
      await until(() => upstream.requests.length === 1, 'the request to reach the target');
      stream.close(8); // RST_STREAM CANCEL
      const line = await until(() => gw.logs.access().find((l) => l.url === '/hang'), 'its access line');
      assert.equal(line.status, 499);
      assert.equal(line.error, 'CLIENT_CLOSED');
      await until(() => closedAtTarget, 'the attempt to end at the target');
      session.close();
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
