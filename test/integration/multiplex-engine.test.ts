import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import { Deadline } from '../../src/deadline.ts';
import { GatewayError } from '../../src/errors.ts';
import {
  createMultiplexHandler,
  type HandlerDeps,
  type MultiplexHandler,
} from '../../src/multiplex/handler.ts';
import { compileMultiplexOptions, type MultiplexOptions, parseBatch } from '../../src/multiplex/schema.ts';
import type { Resolve } from '../../src/multiplex/ssrf.ts';
import type { BatchResult } from '../../src/multiplex/types.ts';
import { failed, fixedAnswer, ok } from '../helpers/multiplex.ts';

// ---------------------------------------------------------------- helpers

/** Cleanups registered from `before` hooks, run once after every test (LIFO). */
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    (server as http.Server).closeAllConnections?.();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

/** Polls `check` until it is truthy (never sleeps for a fixed time and hopes). */
async function until(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A port nothing listens on: bound, then closed (Caddy's deadUpstreamAddr). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

const HOSTS: Record<string, string[]> = {
  'upstream.test': ['127.0.0.1'],
  'secure.test': ['127.0.0.1'],
  'rebind.test': ['127.0.0.1'],
};
const resolved: string[] = [];
/** Test DNS: the names above, ENOTFOUND for anything else. */
const fakeResolve: Resolve = async (name) => {
  resolved.push(name);
  const addresses = HOSTS[name];
  if (!addresses) throw Object.assign(new Error(`queryA ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
  return addresses.map((address) => ({ address, family: net.isIP(address) as 4 | 6, ttl: 60 }));
};

function options(over: Record<string, unknown> = {}): MultiplexOptions {
  return compileMultiplexOptions({ allow: ['127.0.0.0/8'], max_timeout: '5s', ...over });
}

function engine(over: Record<string, unknown> = {}, deps: HandlerDeps = { resolve: fakeResolve }) {
  const opts = options(over);
  const handler = createMultiplexHandler(opts, deps);
  after(() => handler.close());
  return {
    opts,
    handler,
    run: (body: unknown, signal = new AbortController().signal) => run(handler, opts, body, signal),
  };
}

function run(
  handler: MultiplexHandler,
  opts: MultiplexOptions,
  body: unknown,
  signal: AbortSignal,
): Promise<BatchResult> {
  return handler.run(parseBatch(Buffer.from(JSON.stringify(body)), opts), signal);
}


// ---------------------------------------------------------------- upstreams

const held = new Set<http.ServerResponse>();
const arrivedHeld: string[] = [];
const closedHeld: string[] = [];
let requests = 0;
let connections = 0;

function upstreamHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  requests++;
  const url = new URL(req.url ?? '/', 'http://x');
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const acceptsGzip = /gzip/.test(String(req.headers['accept-encoding']));
    const acceptsBr = /\bbr\b/.test(String(req.headers['accept-encoding']));
    if (fixedAnswer(url.pathname, body, res)) return;
    switch (url.pathname) {
      case '/echo':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ method: req.method, headers: req.headers, body_base64: body.toString('base64') }),
        );
        return;
      case '/hold': // answers only when the test releases it
        held.add(res);
        arrivedHeld.push(url.search);
        res.on('close', () => {
          held.delete(res);
          if (!res.writableFinished) closedHeld.push(url.search);
        });
        return;
      case '/gzip':
        if (!acceptsGzip) return void res.writeHead(406).end();
        res.writeHead(200, { 'content-encoding': 'gzip' }).end(zlib.gzipSync('compressed hello'));
        return;
      case '/br':
        if (!acceptsBr) return void res.writeHead(406).end();
        res.writeHead(200, { 'content-encoding': 'br' }).end(zlib.brotliCompressSync('brotli hello'));
        return;
      case '/bad-gzip':
        res.writeHead(200, { 'content-encoding': 'gzip' }).end('this is not gzip');
        return;
      case '/bomb':
        res.writeHead(200, { 'content-encoding': 'gzip' }).end(zlib.gzipSync(Buffer.alloc(100_000)));
        return;
      case '/big': {
        const n = Number(url.searchParams.get('n'));
        const headers = url.searchParams.has('chunked') ? {} : { 'content-length': String(n) };
        res.writeHead(200, headers).end('a'.repeat(n));
        return;
      }
      case '/redirect': {
        const status = Number(url.searchParams.get('status') ?? 302);
        res.writeHead(status, { location: url.searchParams.get('to') ?? '/ok' }).end('moved');
        return;
      }
      case '/loop':
        res.writeHead(302, { location: '/loop' }).end();
        return;
      default:
        res.writeHead(500).end();
    }
  });
}

function release(): void {
  for (const res of held) {
    held.delete(res);
    res.writeHead(200).end('late');
  }
}

let port = 0;
let base = '';
let garbagePort = 0;
let tlsPort = 0;
let tlsCert = '';

before(async () => {
  const upstream = http.createServer(upstreamHandler);
  upstream.on('connection', () => connections++);
  port = await listen(upstream);
  base = `http://127.0.0.1:${port}`;

  // Answers anything with bytes that are not HTTP.
  const garbage = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => socket.end('HELLO THERE\r\n\r\n'));
  });
  garbagePort = await listen(garbage);

  const dir = mkdtempSync(join(tmpdir(), 'manifold-multiplex-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=secure.test',
      '-addext',
      'subjectAltName=DNS:secure.test,IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
  tlsCert = readFileSync(join(dir, 'cert.pem'), 'utf8');
  const secure = https.createServer(
    { key: readFileSync(join(dir, 'key.pem')), cert: tlsCert },
    upstreamHandler,
  );
  tlsPort = await listen(secure);
});

cleanups.push(release);

// ---------------------------------------------------------------- tests

describe('results', () => {
  test('a mixed batch answers every item, in order', async () => {
    const { run } = engine();
    const dead = await deadPort();
    const { responses } = await run({
      requests: [
        { uri: `${base}/ok` },
        { uri: `${base}/404` },
        { uri: `http://127.0.0.1:${dead}/` },
        { uri: `http://no-such-host.test:${port}/` },
        { uri: `http://127.0.0.1:${garbagePort}/` },
        { uri: `http://upstream.test:${port}/ok` },
      ],
    });
    assert.equal(responses.length, 6);
    const first = ok(responses[0]);
    assert.equal(first.status, 200);
    assert.equal(first.body, 'hello');
    assert.equal(first.headers['content-type'], 'text/plain');
    assert.ok(Number.isInteger(first.duration_msec) && first.duration_msec >= 0);
    assert.equal(ok(responses[1]).status, 404);
    assert.equal(ok(responses[1]).body, 'nope');
    assert.match(failed(responses[2], 'CONNECT').error.message, /ECONNREFUSED/);
    assert.match(failed(responses[3], 'DNS').error.message, /no-such-host\.test/);
    failed(responses[4], 'PROTOCOL');
    assert.equal(ok(responses[5]).body, 'hello');
    for (const r of responses) assert.ok(Number.isInteger(r.duration_msec));
  });

  test('binary bodies go out and come back as body_base64; text stays text', async () => {
    const { run } = engine();
    const bytes = Buffer.from([0, 255, 1, 254, 0x80]);
    const { responses } = await run({
      requests: [
        { method: 'POST', uri: `${base}/raw`, body_base64: bytes.toString('base64') },
        { method: 'POST', uri: `${base}/raw`, body: 'héllo ✓' },
        { uri: `${base}/binary` },
        { method: 'HEAD', uri: `${base}/ok` },
      ],
    });
    const bin = ok(responses[0]);
    assert.equal(bin.body, undefined);
    assert.deepEqual(Buffer.from(bin.body_base64!, 'base64'), bytes);
    assert.equal(ok(responses[1]).body, 'héllo ✓');
    assert.equal(ok(responses[2]).body_base64, Buffer.from([0xff, 0x00, 0xfe, 0x80]).toString('base64'));
    assert.equal(ok(responses[3]).body, '');
  });

  test('defaults are merged into every request; the request’s own values win', async () => {
    const { run } = engine();
    const { responses } = await run({
      defaults: { method: 'POST', headers: { 'X-A': '1', 'X-B': 'template' }, body: 'from template' },
      requests: [
        { uri: `${base}/echo` },
        { uri: `${base}/echo`, method: 'PUT', headers: { 'x-b': 'own', 'X-C': '3' }, body_base64: 'AAE=' },
      ],
    });
    const [a, b] = responses.map((r) => JSON.parse(ok(r).body!));
    assert.equal(a.method, 'POST');
    assert.equal(a.headers['x-a'], '1');
    assert.equal(a.headers['x-b'], 'template');
    assert.equal(Buffer.from(a.body_base64, 'base64').toString(), 'from template');
    assert.equal(b.method, 'PUT');
    assert.equal(b.headers['x-a'], '1');
    assert.equal(b.headers['x-b'], 'own');
    assert.equal(b.headers['x-c'], '3');
    assert.equal(b.body_base64, 'AAE=');
  });

  test('HTTPS targets, by address and by name (SNI), trusting the test CA', async () => {
    const { run } = engine({}, { resolve: fakeResolve, tls: { ca: tlsCert } });
    const { responses } = await run({
      requests: [{ uri: `https://127.0.0.1:${tlsPort}/ok` }, { uri: `https://secure.test:${tlsPort}/echo` }],
    });
    assert.equal(ok(responses[0]).body, 'hello');
    assert.equal(JSON.parse(ok(responses[1]).body!).headers.host, `secure.test:${tlsPort}`);
  });

  test('an untrusted certificate is a TLS error', async () => {
    const { run } = engine();
    const { responses } = await run({ requests: [{ uri: `https://127.0.0.1:${tlsPort}/ok` }] });
    failed(responses[0], 'TLS');
  });
});

describe('deadlines', () => {
  test('the answer comes at the deadline: slow items TIMEOUT, fast ones succeed', async () => {
    const { run } = engine();
    const { responses } = await run({
      timeout_msec: 1000,
      requests: [{ uri: `${base}/ok` }, { uri: `${base}/hold?deadline` }, { uri: `${base}/ok?2` }],
    });
    // Ordering, not wall-clock: run() resolved while the upstream still held the slow request
    // unanswered (only release() answers it; its close comes later, from our abort).
    assert.ok(arrivedHeld.includes('?deadline'), 'the slow request reached the upstream');
    assert.ok(!closedHeld.includes('?deadline'), 'and was still open when run() resolved');
    assert.equal(ok(responses[0]).status, 200);
    const slow = failed(responses[1], 'TIMEOUT');
    assert.match(slow.error.message, /1000 ms/);
    assert.ok(slow.duration_msec >= 999);
    assert.equal(ok(responses[2]).status, 200);
    await until(() => closedHeld.includes('?deadline'), 'the upstream to see the abandoned request close');
  });

  test('a per-request timeout_msec ends that item early; the batch goes on', async () => {
    const { run } = engine();
    const { responses } = await run({
      timeout_msec: 5000,
      requests: [{ uri: `${base}/hold?item`, timeout_msec: 100 }, { uri: `${base}/ok` }],
    });
    assert.match(failed(responses[0], 'TIMEOUT').error.message, /100 ms \(timeout_msec\)/);
    assert.equal(ok(responses[1]).status, 200);
    // On a loaded machine the request may have been aborted before it was even sent.
    await until(
      () => !arrivedHeld.includes('?item') || closedHeld.includes('?item'),
      'the upstream to see the timed-out request close',
    );
  });

  test('the downstream going away aborts everything and rejects with CLIENT_CLOSED', async () => {
    const { run } = engine();
    const client = new AbortController();
    const result = run({ requests: [{ uri: `${base}/hold?client` }, { uri: `${base}/ok` }] }, client.signal);
    await until(() => [...held].length > 0, 'the request to reach the upstream');
    client.abort();
    await assert.rejects(
      result,
      (err: unknown) => err instanceof GatewayError && err.code === 'CLIENT_CLOSED',
    );
    await until(() => closedHeld.includes('?client'), 'the upstream to see the request close');
  });

  test('issue 11: under the request\'s Deadline, its end aborts the item in flight and the one waiting for a slot', async () => {
    const { handler, opts } = engine({ max_concurrency: 1 });
    const deadline = new Deadline();
    const body = { requests: [{ uri: `${base}/hold?request` }, { uri: `${base}/ok?waiting` }] };
    const result = handler.run(parseBatch(Buffer.from(JSON.stringify(body)), opts), deadline);
    await until(() => arrivedHeld.includes('?request'), 'the first item at the upstream');
    assert.deepEqual(handler.load, { active: 1, waiting: 1 }, 'the second waits for a slot');
    deadline.closed(false); // what the pipeline does when the downstream goes away
    await assert.rejects(result, (err: unknown) => err instanceof GatewayError && err.code === 'CLIENT_CLOSED');
    await until(() => closedHeld.includes('?request'), 'the upstream to see the request close');
    assert.deepEqual(handler.load, { active: 0, waiting: 0 });
  });

  test('a TimeoutError reason ends the batch like its own deadline', async () => {
    const { run } = engine();
    const { responses } = await run({ requests: [{ uri: `${base}/hold?route` }] }, AbortSignal.timeout(50));
    failed(responses[0], 'TIMEOUT');
  });

  test('max_concurrency bounds requests in flight; the rest wait', async () => {
    const { run, handler } = engine({ max_concurrency: 2 });
    const result = run({ requests: [1, 2, 3, 4].map((i) => ({ uri: `${base}/hold?c${i}` })) });
    await until(() => held.size === 2, 'two requests at the upstream');
    assert.deepEqual(handler.load, { active: 2, waiting: 2 });
    release();
    await until(() => held.size === 2, 'the two waiting requests at the upstream');
    release();
    const { responses } = await result;
    for (const r of responses) assert.equal(ok(r).body, 'late');
    assert.deepEqual(handler.load, { active: 0, waiting: 0 });
  });
});

describe('outbound efficiency', () => {
  test('connections are reused across batches (keep-alive per origin)', async () => {
    // Without keep-alive every request would need its own connection, cap or not.
    const { run } = engine({ max_connections_per_origin: 5 });
    const [c0, r0] = [connections, requests];
    for (let i = 0; i < 10; i++) {
      const { responses } = await run({ requests: [1, 2, 3, 4, 5].map(() => ({ uri: `${base}/ok` })) });
      for (const r of responses) assert.equal(ok(r).status, 200);
    }
    assert.equal(requests - r0, 50);
    assert.ok(connections - c0 <= 5, `50 requests took ${connections - c0} connections`);
  });

  test('new connections spread across the addresses a name resolves to', async () => {
    const counts = [0, 0];
    const servers = ['127.0.0.1', '127.0.0.2'].map((address, i) => {
      const server = http.createServer((_req, res) => res.end(address));
      server.on('connection', () => counts[i]++);
      return server;
    });
    const spreadPort = await listen(servers[0]);
    servers[1].listen(spreadPort, '127.0.0.2');
    await once(servers[1], 'listening');
    cleanups.push(() => {
      servers[1].closeAllConnections();
      servers[1].close();
    });
    HOSTS['spread.test'] = ['127.0.0.1', '127.0.0.2'];
    const { run } = engine({ max_connections_per_origin: 4 });
    const { responses } = await run({
      requests: [1, 2, 3, 4].map(() => ({ uri: `http://spread.test:${spreadPort}/` })),
    });
    assert.deepEqual(responses.map((r) => ok(r).body).sort(), [
      '127.0.0.1',
      '127.0.0.1',
      '127.0.0.2',
      '127.0.0.2',
    ]);
    assert.deepEqual(counts, [2, 2]);
  });

  test('gzip and br answers are decoded; a caller’s own Accept-Encoding gets raw bytes', async () => {
    const { run } = engine();
    const { responses } = await run({
      requests: [
        { uri: `${base}/gzip` },
        { uri: `${base}/br` },
        { uri: `${base}/gzip`, headers: { 'Accept-Encoding': 'gzip' } },
        { uri: `${base}/bad-gzip` },
        { method: 'HEAD', uri: `${base}/gzip` },
      ],
    });
    const gz = ok(responses[0]);
    assert.equal(gz.body, 'compressed hello');
    assert.equal(gz.headers['content-encoding'], undefined);
    assert.equal(gz.headers['content-length'], undefined);
    assert.equal(ok(responses[1]).body, 'brotli hello');
    const raw = ok(responses[2]);
    assert.equal(raw.headers['content-encoding'], 'gzip');
    assert.equal(zlib.gunzipSync(Buffer.from(raw.body_base64!, 'base64')).toString(), 'compressed hello');
    failed(responses[3], 'PROTOCOL');
    assert.equal(ok(responses[4]).body, '', 'HEAD: nothing to decode');
  });

  test('decompress: false leaves encodings alone', async () => {
    const { run } = engine({ decompress: false });
    const { responses } = await run({ requests: [{ uri: `${base}/gzip` }] });
    assert.equal(ok(responses[0]).status, 406, 'no Accept-Encoding was sent');
  });
});

describe('limits', () => {
  test('per-item bytes: declared length, streamed length and decoded length', async () => {
    const { run } = engine({ max_item_bytes: 1000, max_total_bytes: 10_000 });
    const { responses } = await run({
      requests: [
        { uri: `${base}/big?n=1000` },
        { uri: `${base}/big?n=1001` },
        { uri: `${base}/big?n=1001&chunked` },
        { uri: `${base}/bomb` },
        { uri: `${base}/big?n=10&chunked` },
      ],
    });
    assert.equal(ok(responses[0]).body?.length, 1000);
    const chunked = ok(responses.pop());
    assert.equal(chunked.body, 'a'.repeat(10));
    assert.equal(chunked.headers['transfer-encoding'], undefined, 'connection-level headers are dropped');
    for (const r of responses.slice(1))
      assert.match(failed(r, 'BODY_TOO_LARGE').error.message, /max_item_bytes/);
  });

  test('total bytes of a batch: the item that crosses the line fails, the rest succeed', async () => {
    const { run } = engine({ max_item_bytes: 1000, max_total_bytes: 2500 });
    const { responses } = await run({ requests: [1, 2, 3].map(() => ({ uri: `${base}/big?n=900` })) });
    const failures = responses.filter((r) => 'error' in r);
    assert.equal(failures.length, 1);
    assert.match(failed(failures[0], 'BODY_TOO_LARGE').error.message, /max_total_bytes/);
  });
});

describe('target safety', () => {
  test('loopback, metadata and mapped forms are refused without an allow list', async () => {
    const { handler, opts } = engine({ allow: undefined }, {});
    const c0 = connections;
    const { responses } = await run(
      handler,
      opts,
      {
        requests: [
          { uri: `${base}/ok` },
          { uri: `http://localhost:${port}/ok` }, // system DNS: resolves to loopback
          { uri: 'http://169.254.169.254/latest/meta-data/' },
          { uri: `http://[::ffff:127.0.0.1]:${port}/ok` },
          { uri: `http://[::1]:${port}/ok` },
          { uri: `http://0.0.0.0:${port}/ok` },
        ],
      },
      new AbortController().signal,
    );
    assert.match(
      failed(responses[0], 'FORBIDDEN_TARGET').error.message,
      /127\.0\.0\.1 is a loopback address/,
    );
    assert.match(
      failed(responses[1], 'FORBIDDEN_TARGET').error.message,
      /^localhost resolves to a loopback address$/,
    );
    assert.match(failed(responses[2], 'FORBIDDEN_TARGET').error.message, /link-local/);
    assert.match(failed(responses[3], 'FORBIDDEN_TARGET').error.message, /loopback/);
    failed(responses[4], 'FORBIDDEN_TARGET');
    assert.match(failed(responses[5], 'FORBIDDEN_TARGET').error.message, /unspecified/);
    assert.equal(connections, c0, 'no connection reached the upstream');
  });

  test('a name resolving to loopback is refused; a host pattern alone does not open it', async () => {
    const plain = engine({ allow: undefined });
    const named = engine({ allow: ['rebind.test'] });
    const body = { requests: [{ uri: `http://rebind.test:${port}/ok` }] };
    assert.match(
      failed((await plain.run(body)).responses[0], 'FORBIDDEN_TARGET').error.message,
      /^rebind\.test resolves to a loopback address$/,
    );
    failed((await named.run(body)).responses[0], 'FORBIDDEN_TARGET');
  });

  test('names outside a host-only allow list are refused before DNS', async () => {
    const { run } = engine({ allow: ['*.example.com'] });
    const n = resolved.length;
    const { responses } = await run({ requests: [{ uri: `http://upstream.test:${port}/ok` }] });
    assert.match(failed(responses[0], 'FORBIDDEN_TARGET').error.message, /not in the allow list/);
    assert.equal(resolved.length, n);
  });

  test('allowed when inside an allowed CIDR, in either spelling', async () => {
    const { run } = engine({ allow: ['127.0.0.1/32'] });
    const { responses } = await run({
      requests: [
        { uri: `${base}/ok` },
        { uri: `http://[::ffff:127.0.0.1]:${port}/ok` },
        { uri: `http://rebind.test:${port}/ok` },
        { uri: `http://127.0.0.2:${port}/ok` },
      ],
    });
    assert.equal(ok(responses[0]).body, 'hello');
    assert.equal(ok(responses[1]).body, 'hello');
    assert.equal(ok(responses[2]).body, 'hello');
    assert.match(
      failed(responses[3], 'FORBIDDEN_TARGET').error.message,
      /127\.0\.0\.2 is a loopback address/,
    );
  });
});

describe('issue 11: DNS through undici\'s dns interceptor keeps the guard', () => {
  test('an answer that changes to a forbidden address (rebinding) is refused when next resolved; nothing connects to it', async () => {
    // 127.0.0.2 is a loopback address outside the allowed 127.0.0.1/32: a rebind target.
    let rebound = 0;
    const trap = http.createServer((_req, res) => res.end('trap'));
    trap.on('connection', () => rebound++);
    trap.listen(port, '127.0.0.2');
    await once(trap, 'listening');
    cleanups.push(() => {
      trap.closeAllConnections();
      trap.close();
    });
    HOSTS['flip.test'] = ['127.0.0.1'];
    // A cap of 1 ms: the answer is stale by the next request.
    const { run } = engine({ allow: ['127.0.0.1/32'], dns_max_ttl: 1 });
    const body = { requests: [{ uri: `http://flip.test:${port}/ok` }] };
    assert.equal(ok((await run(body)).responses[0]).body, 'hello');
    HOSTS['flip.test'] = ['127.0.0.2'];
    const n = resolved.length;
    const started = Date.now();
    await until(() => Date.now() > started + 2, 'the answer to expire');
    const { responses } = await run(body);
    assert.equal(
      failed(responses[0], 'FORBIDDEN_TARGET').error.message,
      'flip.test resolves to a loopback address',
    );
    assert.ok(resolved.length > n, 'the name was resolved again');
    assert.equal(rebound, 0, 'no connection reached the rebound address');
  });

  test('redirect hops are resolved and checked by name too', async () => {
    HOSTS['hop.test'] = ['127.0.0.2'];
    const { run } = engine({ allow: ['127.0.0.1/32'] });
    const { responses } = await run({
      follow_redirects: true,
      requests: [{ uri: `${base}/redirect?to=${encodeURIComponent(`http://hop.test:${port}/ok`)}` }],
    });
    assert.equal(failed(responses[0], 'FORBIDDEN_TARGET').error.message, 'hop.test resolves to a loopback address');
  });
});

describe('redirects', () => {
  test('not followed unless asked', async () => {
    const { run } = engine();
    const { responses } = await run({ requests: [{ uri: `${base}/redirect?to=/ok` }] });
    const r = ok(responses[0]);
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, '/ok');
  });

  test('followed when asked, per batch or per item, within the hop limit', async () => {
    const { run } = engine({ max_redirects: 2 });
    const { responses } = await run({
      follow_redirects: true,
      requests: [
        { uri: `${base}/redirect?to=/ok` },
        { uri: `${base}/redirect?to=/ok`, follow_redirects: false },
        { uri: `${base}/loop` },
        { uri: `${base}/redirect?to=ftp://example.com/` },
      ],
    });
    assert.equal(ok(responses[0]).body, 'hello');
    assert.equal(ok(responses[1]).status, 302);
    assert.match(failed(responses[2], 'PROTOCOL').error.message, /more than 2 redirects/);
    assert.match(failed(responses[3], 'PROTOCOL').error.message, /unsupported location/);
  });

  test('every hop is re-checked against the allow list and address rules', async () => {
    const { run } = engine({ allow: ['127.0.0.1/32'] });
    const { responses } = await run({
      follow_redirects: true,
      requests: [
        { uri: `${base}/redirect?to=http://169.254.169.254/latest/meta-data/` },
        { uri: `${base}/redirect?to=http://127.0.0.2:${port}/ok` },
      ],
    });
    assert.match(
      failed(responses[0], 'FORBIDDEN_TARGET').error.message,
      /169\.254\.169\.254 is a link-local/,
    );
    failed(responses[1], 'FORBIDDEN_TARGET');
  });

  test('303 turns POST into GET; credentials do not cross origins', async () => {
    const { run } = engine();
    const other = `http://upstream.test:${port}/echo`;
    const { responses } = await run({
      follow_redirects: true,
      requests: [
        {
          method: 'POST',
          uri: `${base}/redirect?status=303&to=/echo`,
          body: 'x',
          headers: { 'Content-Type': 'text/plain' },
        },
        { method: 'PUT', uri: `${base}/redirect?status=307&to=/echo`, body: 'kept' },
        {
          uri: `${base}/redirect?to=${encodeURIComponent(other)}`,
          headers: { Authorization: 'Bearer s', 'X-Keep': '1' },
        },
      ],
    });
    const [a, b, c] = responses.map((r) => JSON.parse(ok(r).body!));
    assert.equal(a.method, 'GET');
    assert.equal(a.body_base64, '');
    assert.equal(a.headers['content-type'], undefined);
    assert.equal(b.method, 'PUT');
    assert.equal(Buffer.from(b.body_base64, 'base64').toString(), 'kept');
    assert.equal(c.headers.authorization, undefined);
    assert.equal(c.headers['x-keep'], '1');
  });
});

describe('bad input', () => {
  const opts = compileMultiplexOptions({ max_requests: 3, max_timeout: 1000, max_body_bytes: 20_000 });
  const uri = 'http://example.com/';
  const cases: [string, unknown, string][] = [
    ['not an object', [], 'body: must be an object'],
    ['no requests', {}, 'requests: required'],
    ['requests not a list', { requests: {} }, 'requests: must be an array'],
    ['empty list', { requests: [] }, 'requests: must not be empty'],
    [
      'too many',
      { requests: [{ uri }, { uri }, { uri }, { uri }] },
      'requests: at most 3 requests are allowed, got 4',
    ],
    ['unknown top-level field', { requests: [{ uri }], extra: 1 }, 'extra: unknown field'],
    ['item not an object', { requests: [{ uri }, 'x'] }, 'requests[1]: must be an object'],
    ['unknown item field', { requests: [{ uri }, { uri, url: uri }] }, 'requests[1].url: unknown field'],
    ['missing uri', { requests: [{}] }, 'requests[0].uri: required'],
    ['uri not a string', { requests: [{ uri: 5 }] }, 'requests[0].uri: must be a string'],
    [
      'relative uri',
      { requests: [{ uri }, { uri }, { uri: '/path' }] },
      'requests[2].uri: not an absolute http(s) URL',
    ],
    [
      'ftp uri',
      { requests: [{ uri: 'ftp://example.com/' }] },
      'requests[0].uri: not an absolute http(s) URL',
    ],
    [
      'credentials',
      { requests: [{ uri: 'http://u:p@example.com/' }] },
      'requests[0].uri: credentials in the URL are not allowed',
    ],
    [
      'long uri',
      { requests: [{ uri: `${uri}${'a'.repeat(8192)}` }] },
      'requests[0].uri: longer than 8192 characters',
    ],
    ['method type', { requests: [{ uri, method: 1 }] }, 'requests[0].method: must be a string'],
    [
      'method value',
      { requests: [{ uri, method: 'TRACE' }] },
      'requests[0].method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
    ],
    ['headers type', { requests: [{ uri, headers: [] }] }, 'requests[0].headers: must be an object'],
    [
      'header value type',
      { requests: [{ uri, headers: { 'X-A': 1 } }] },
      'requests[0].headers.X-A: must be a string',
    ],
    [
      'header CRLF',
      { requests: [{ uri, headers: { 'X-A': 'a\r\nB: c' } }] },
      'requests[0].headers.X-A: not a valid header value',
    ],
    [
      'header name',
      { requests: [{ uri, headers: { 'bad name': 'x' } }] },
      'requests[0].headers["bad name"]: not a valid header name',
    ],
    [
      'host header',
      { requests: [{ uri, headers: { Host: 'x' } }] },
      'requests[0].headers.Host: not allowed (set by the gateway)',
    ],
    [
      'duplicate header',
      { requests: [{ uri, headers: { 'X-A': '1', 'x-a': '2' } }] },
      'requests[0].headers.x-a: duplicate header (names are case-insensitive)',
    ],
    ['body type', { requests: [{ uri, body: {} }] }, 'requests[0].body: must be a string'],
    [
      'both bodies',
      { requests: [{ uri, body: 'a', body_base64: 'YQ==' }] },
      'requests[0].body_base64: not allowed together with body',
    ],
    ['bad base64', { requests: [{ uri, body_base64: 'abc' }] }, 'requests[0].body_base64: not valid base64'],
    [
      'batch timeout over max',
      { timeout_msec: 1001, requests: [{ uri }] },
      'timeout_msec: must be an integer from 1 to 1000 (max_timeout of this route)',
    ],
    [
      'batch timeout zero',
      { timeout_msec: 0, requests: [{ uri }] },
      'timeout_msec: must be an integer from 1 to 1000 (max_timeout of this route)',
    ],
    [
      'batch timeout string',
      { timeout_msec: '100', requests: [{ uri }] },
      'timeout_msec: must be an integer from 1 to 1000 (max_timeout of this route)',
    ],
    [
      'item timeout over batch',
      { timeout_msec: 250, requests: [{ uri, timeout_msec: 251 }] },
      'requests[0].timeout_msec: must be an integer from 1 to 250 (the batch timeout_msec)',
    ],
    [
      'item timeout fraction',
      { requests: [{ uri, timeout_msec: 1.5 }] },
      'requests[0].timeout_msec: must be an integer from 1 to 1000 (the batch timeout_msec)',
    ],
    [
      'follow_redirects type',
      { follow_redirects: 'yes', requests: [{ uri }] },
      'follow_redirects: must be a boolean',
    ],
    [
      'item follow_redirects type',
      { requests: [{ uri, follow_redirects: 1 }] },
      'requests[0].follow_redirects: must be a boolean',
    ],
    ['defaults type', { defaults: 'x', requests: [{ uri }] }, 'defaults: must be an object'],
    ['defaults unknown field', { defaults: { uri }, requests: [{ uri }] }, 'defaults.uri: unknown field'],
    [
      'defaults method',
      { defaults: { method: 'get' }, requests: [{ uri }] },
      'defaults.method: must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS',
    ],
    [
      'defaults header',
      { defaults: { headers: { Connection: 'close' } }, requests: [{ uri }] },
      'defaults.headers.Connection: not allowed (set by the gateway)',
    ],
  ];
  for (const [name, body, message] of cases) {
    test(name, () => {
      assert.throws(
        () => parseBatch(Buffer.from(JSON.stringify(body)), opts),
        (err: unknown) =>
          err instanceof GatewayError &&
          err.code === 'INVALID_BODY' &&
          err.status === 400 &&
          err.message === message,
        message,
      );
    });
  }

  test('invalid JSON and invalid UTF-8', () => {
    assert.throws(
      () => parseBatch(Buffer.from('{"requests": ['), opts),
      (err: GatewayError) => err.code === 'INVALID_BODY' && err.message.startsWith('body: invalid JSON ('),
    );
    assert.throws(() => parseBatch(Buffer.from([0x7b, 0xff, 0x7d]), opts), {
      code: 'INVALID_BODY',
      message: 'body: not valid UTF-8',
    });
  });

  test('a batch body over max_body_bytes is 413 BODY_TOO_LARGE', () => {
    assert.throws(() => parseBatch(Buffer.alloc(20_001, 0x20), opts), {
      code: 'BODY_TOO_LARGE',
      status: 413,
      message: 'batch body is larger than 20000 bytes',
    });
  });

  test('a valid batch: defaults to GET, the route deadline, no redirects', () => {
    const batch = parseBatch(
      Buffer.from(JSON.stringify({ requests: [{ uri: 'https://example.com/a?b#frag' }] })),
      opts,
    );
    assert.equal(batch.timeoutMs, 1000);
    assert.deepEqual(
      batch.items.map((i) => [i.method, i.url.href, i.timeoutMs, i.followRedirects, i.body]),
      [['GET', 'https://example.com/a?b', 1000, false, null]],
    );
  });
});

describe('route config', () => {
  test('defaults', () => {
    const opts = compileMultiplexOptions({});
    assert.deepEqual(
      { ...opts },
      {
        format: 'manifold',
        maxRequests: 100,
        maxTimeoutMs: 10_000,
        allow: null,
        maxItemBytes: 1_048_576,
        maxTotalBytes: 8_388_608,
        maxConcurrency: 64,
        maxConnectionsPerOrigin: 16,
        maxBodyBytes: 1_048_576,
        maxRedirects: 5,
        decompress: true,
        dnsMaxTtlMs: 60_000,
        keepAliveTimeoutMs: 4000,
        tls: null,
      },
    );
    assert.ok(Object.isFrozen(opts));
  });

  test('durations and sizes are parsed up front', () => {
    const opts = compileMultiplexOptions({
      max_timeout: '250ms',
      dns_max_ttl: '1.5m',
      max_item_bytes: '64KiB',
      max_total_bytes: '1MB',
    });
    assert.equal(opts.maxTimeoutMs, 250);
    assert.equal(opts.dnsMaxTtlMs, 90_000);
    assert.equal(opts.maxItemBytes, 65_536);
    assert.equal(opts.maxTotalBytes, 1_000_000);
  });

  test('errors name the key path', () => {
    const cases: [unknown, string][] = [
      [{ nope: 1 }, 'routes[2].multiplex.nope: unknown key'],
      [{ max_requests: 0 }, 'routes[2].multiplex.max_requests: must be >= 1'],
      [
        { allow: ['ok.example', '10.0.0.0/33'] },
        'routes[2].multiplex.allow[1]: not a valid CIDR: "10.0.0.0/33"',
      ],
      [{ allow: [] }, 'routes[2].multiplex.allow: must NOT have fewer than 1 items'],
      [
        { max_timeout: '10 parsecs' },
        'routes[2].multiplex.max_timeout: must be a duration like "250ms", "10s", "1m" or integer milliseconds',
      ],
      [
        { max_item_bytes: '2MiB', max_total_bytes: '1MiB' },
        'routes[2].multiplex.max_total_bytes: must not be smaller than max_item_bytes',
      ],
    ];
    for (const [raw, message] of cases) {
      assert.throws(() => compileMultiplexOptions(raw, 'routes[2].multiplex'), {
        name: 'MultiplexConfigError',
        message,
      });
    }
  });
});
