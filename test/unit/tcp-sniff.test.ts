/**
 * Issue 17, item 2: what the first bytes of a TCP connection say. The ClientHellos are real
 * ones, produced by node:tls and captured by a raw net server; the parsers are fed them whole,
 * byte by byte, re-framed over several TLS records, and mutated (never a throw).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { compileTcp, pickRoute, type TcpConfig, tcpSchema } from '../../src/tcp/spec.ts';
import { proxyV1, proxyV2 } from '../../src/tcp/proxy-protocol.ts';
import { MORE, parseClientHello, parseHttpHead, sniff, sniffBytes } from '../../src/tcp/sniff.ts';
import type { CompileProblem } from '../../src/lib/problem.ts';

/** A raw TCP server that keeps the first bytes of each connection (a ClientHello), then closes it. */
let capture: Server;
let capturePort = 0;
const captured: Array<(b: Buffer) => void> = [];
before(async () => {
  capture = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      // One whole record header + body is enough for the ClientHellos node:tls sends.
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        captured.shift()?.(buf);
        s.destroy();
      }
    });
    s.on('error', () => {});
  });
  capture.listen(0, '127.0.0.1');
  await once(capture, 'listening');
  capturePort = (capture.address() as { port: number }).port;
});
after(() => capture.close());

async function clientHello(opts: { servername?: string }): Promise<Buffer> {
  const got = new Promise<Buffer>((resolve) => captured.push(resolve));
  const c = tlsConnect({ host: '127.0.0.1', port: capturePort, rejectUnauthorized: false, ...opts });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  return hello;
}

/** Re-frames the handshake bytes of `hello` into TLS records of at most `size` bytes each. */
function reframe(hello: Buffer, size: number): Buffer {
  const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) {
    const part = body.subarray(i, i + size);
    const h = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
    h.writeUInt16BE(part.length, 3);
    out.push(h, part);
  }
  return Buffer.concat(out);
}

describe('TLS ClientHello', () => {
  test('the SNI of a real ClientHello from node:tls', async () => {
    const hello = await clientHello({ servername: 'API.Example.com' });
    assert.equal(parseClientHello(hello), 'api.example.com');
    assert.deepEqual(sniffBytes(hello, false), { kind: 'tls', sni: 'api.example.com' });
  });

  test('no server_name (node:tls sends none for an IP address): sni null', async () => {
    const hello = await clientHello({});
    assert.equal(parseClientHello(hello), null);
    assert.deepEqual(sniffBytes(hello, false), { kind: 'tls', sni: null });
  });

  test('split over TCP reads: MORE until the last byte, then the name', async () => {
    const hello = await clientHello({ servername: 'split.example.com' });
    for (let n = 0; n < hello.length; n++) assert.equal(parseClientHello(hello.subarray(0, n)), MORE, `at ${n} bytes`);
    assert.equal(parseClientHello(hello), 'split.example.com');
    // Judged as final (window full, timeout), an incomplete one is unknown, not waited on.
    assert.deepEqual(sniffBytes(hello.subarray(0, 40), true), { kind: 'unknown', reason: 'incomplete TLS ClientHello' });
  });

  test('split over several TLS records (RFC 8446 §5.1), and those split over reads', async () => {
    const hello = await clientHello({ servername: 'records.example.com' });
    for (const size of [1, 7, 64, 200]) {
      const framed = reframe(hello, size);
      assert.equal(parseClientHello(framed), 'records.example.com', `records of ${size} bytes`);
      assert.equal(parseClientHello(framed.subarray(0, framed.length - 1)), MORE);
    }
  });

  test('garbage is refused at once, cleanly', async () => {
    const cases: Array<[string, Buffer]> = [
      ['record length 0', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])],
      ['record too long', Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff])],
      ['not TLS version', Buffer.from([0x16, 0x09, 0x01, 0x00, 0x10])],
      ['not a ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00])],
      ['alert record', Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28])],
    ];
    for (const [what, buf] of cases) {
      const r = sniffBytes(buf, false);
      assert.notEqual(r, MORE, what);
      assert.equal((r as { kind: string }).kind, 'unknown', what);
    }
    // A ClientHello whose inner lengths lie (the extensions block claims more than there is).
    const hello = Buffer.from(await clientHello({ servername: 'x.example.com' }));
    const lying = Buffer.from(hello);
    lying.writeUInt16BE(0xfff0, 5 + 4 + 2 + 32 + 1 + hello[5 + 4 + 2 + 32]); // cipher_suites length
    assert.equal((sniffBytes(lying, false) as { kind: string }).kind, 'unknown');
  });

  test('thousands of mutated ClientHellos: never a throw, always a verdict or MORE', async () => {
    const hello = await clientHello({ servername: 'fuzz.example.com' });
    let seed = 17;
    const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 5000; i++) {
      const m = Buffer.from(hello);
      for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
      const cut = m.subarray(0, Math.floor(rand() * (m.length + 1)));
      for (const final of [false, true]) {
        const r = sniffBytes(cut, final);
        if (final) assert.notEqual(r, MORE);
        if (r !== MORE && r.kind === 'tls' && r.sni !== null) assert.match(r.sni, /^[a-z0-9_.-]+$/);
      }
    }
  });
});

describe('HTTP/1.x request head', () => {
  test('request line and Host (lower case, port stripped)', () => {
    const head = Buffer.from('GET /x?y=1 HTTP/1.1\r\nUser-Agent: t\r\nHost: Plain.Example.com:8080\r\n\r\nbody');
    assert.deepEqual(parseHttpHead(head), { method: 'GET', target: '/x?y=1', host: 'plain.example.com' });
    assert.deepEqual(sniffBytes(head, false), { kind: 'http', method: 'GET', target: '/x?y=1', host: 'plain.example.com' });
  });

  test('absolute-form wins over Host; no Host is an empty host', () => {
    assert.deepEqual(parseHttpHead(Buffer.from('GET http://abs.example.com:81/p HTTP/1.1\r\nHost: other\r\n\r\n')), {
      method: 'GET',
      target: 'http://abs.example.com:81/p',
      host: 'abs.example.com',
    });
    assert.deepEqual(parseHttpHead(Buffer.from('GET / HTTP/1.0\r\n\r\n')), { method: 'GET', target: '/', host: '' });
  });

  test('an incomplete head is MORE, byte by byte, then decided', () => {
    const head = Buffer.from('POST /submit HTTP/1.1\r\nHost: a.example.com\r\n\r\n');
    for (let n = 1; n < head.length; n++) assert.equal(sniffBytes(head.subarray(0, n), false), MORE, `at ${n}`);
    assert.equal((sniffBytes(head, false) as { kind: string }).kind, 'http');
    assert.deepEqual(sniffBytes(head.subarray(0, 10), true), { kind: 'unknown', reason: 'incomplete HTTP request head' });
  });

  test('garbage and other protocols are unknown at once', () => {
    for (const text of [
      'GET / HTTP/2.0\r\n\r\n',
      'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
      'GET / HTTP/1.1\r\nbad header line\r\n\r\n',
      'Get / HTTP/1.1\r\n',
      'GET /\x00',
      'SSH-2.0-OpenSSH_9.6\r\n',
    ]) {
      const r = sniffBytes(Buffer.from(text, 'latin1'), false);
      assert.notEqual(r, MORE, JSON.stringify(text));
      assert.equal((r as { kind: string }).kind, 'unknown', JSON.stringify(text));
    }
    assert.deepEqual(sniffBytes(Buffer.from([0x00, 0x01]), false), { kind: 'unknown', reason: 'neither TLS nor HTTP/1.x' });
  });
});

describe('sniff() on a real socket', () => {
  async function pair(): Promise<{ server: Socket; client: Socket; close(): void }> {
    const srv = createServer({ allowHalfOpen: true });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const client = netConnect((srv.address() as { port: number }).port, '127.0.0.1');
    const [server] = (await once(srv, 'connection')) as [Socket];
    return {
      server,
      client,
      close() {
        client.destroy();
        server.destroy();
        srv.close();
      },
    };
  }

  test('an HTTP head written in pieces: decided when whole; the bytes are handed back', async (t) => {
    const p = await pair();
    t.after(() => p.close());
    const done = sniff(p.server, { windowBytes: 32 * 1024, timeoutMs: 5000 });
    p.client.write('GET / HT');
    await new Promise((r) => setTimeout(r, 30));
    p.client.write('TP/1.1\r\nHost: piece.example.com\r\n\r\nrest');
    const r = await done;
    assert.equal(r.sniffed.kind, 'http');
    assert.equal((r.sniffed as { host: string }).host, 'piece.example.com');
    assert.equal(r.timedOut, false);
    assert.match(r.head.toString(), /^GET \/ HTTP\/1\.1\r\nHost: piece\.example\.com\r\n\r\n/);
    assert.equal(p.server.isPaused(), true, 'left paused for the caller to pipe');
  });

  test('nothing sent: the window timeout decides, unknown', async (t) => {
    const p = await pair();
    t.after(() => p.close());
    const r = await sniff(p.server, { windowBytes: 32 * 1024, timeoutMs: 100 });
    assert.deepEqual(r.sniffed, { kind: 'unknown', reason: 'nothing was sent' });
    assert.equal(r.timedOut, true);
    assert.equal(r.head.length, 0);
  });

  test('a full window of a valid beginning is judged as it is', async (t) => {
    const p = await pair();
    t.after(() => p.close());
    const done = sniff(p.server, { windowBytes: 1024, timeoutMs: 5000 });
    p.client.write(`GET /${'a'.repeat(4000)}`);
    const r = await done;
    assert.equal(r.sniffed.kind, 'unknown');
    assert.equal(r.timedOut, false);
    assert.ok(r.head.length >= 1024, 'every byte read is handed back');
  });

  test('a client that half-closes mid-head: decided as final, `ended`', async (t) => {
    const p = await pair();
    t.after(() => p.close());
    const done = sniff(p.server, { windowBytes: 1024, timeoutMs: 5000 });
    p.client.end('GET / HTTP/1.1\r\nHost: x');
    const r = await done;
    assert.equal(r.ended, true);
    assert.equal(r.sniffed.kind, 'unknown');
  });

  test('a client that resets before deciding: rejected', async (t) => {
    const p = await pair();
    t.after(() => p.close());
    const done = sniff(p.server, { windowBytes: 1024, timeoutMs: 5000 });
    p.client.write('GET /');
    await new Promise((r) => setTimeout(r, 20));
    p.client.resetAndDestroy();
    await assert.rejects(done);
  });
});

describe('tcp spec', () => {
  const base: TcpConfig = {
    window_bytes: '32KiB',
    window_timeout: '3s',
    idle_timeout: '5m',
    connect_timeout: '5s',
    routes: [],
  };

  test('compiles routes, matches SNI and Host patterns in order, then the default', () => {
    const problems: CompileProblem[] = [];
    const spec = compileTcp(
      {
        ...base,
        routes: [
          { id: 'exact', sni: ['www.example.com'], pool: 'a' },
          { sni: ['*.example.com'], host: ['plain.example.com'], pool: 'b' },
          { host: ['*'], pool: 'c' },
        ],
        default_pool: 'd',
      },
      ['listeners', 1, 'tcp'],
      new Set(['a', 'b', 'c', 'd']),
      problems,
    );
    assert.deepEqual(problems, []);
    assert.equal(spec.windowBytes, 32 * 1024);
    assert.equal(spec.windowTimeoutMs, 3000);
    assert.deepEqual(pickRoute(spec, { kind: 'tls', sni: 'www.example.com' }), spec.routes[0]);
    assert.equal(pickRoute(spec, { kind: 'tls', sni: 'api.example.com' })?.id, 'tcp-route-1');
    assert.deepEqual(pickRoute(spec, { kind: 'tls', sni: 'example.com' }), { id: 'default', pool: 'd' });
    assert.deepEqual(pickRoute(spec, { kind: 'tls', sni: null }), { id: 'default', pool: 'd' });
    assert.equal(pickRoute(spec, { kind: 'http', host: 'plain.example.com' })?.pool, 'b');
    assert.equal(pickRoute(spec, { kind: 'http', host: '' })?.pool, 'c', '`*` takes a request without Host');
    assert.equal(pickRoute(spec, { kind: 'unknown' })?.pool, 'd');
    assert.equal(pickRoute({ ...spec, defaultPool: null }, { kind: 'unknown' }), null);
  });

  test('the schema (with the options config/load.ts compiles with) fills defaults and refuses bad keys', () => {
    const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true, strictRequired: false });
    ajv.addKeyword({ keyword: 'errorMessage', schemaType: 'string' });
    const validate = ajv.compile(tcpSchema);
    // The YAML of README "TCP mode", as it sits under `listeners[].tcp`.
    const doc = parseYaml(`
window_timeout: 2s
proxy_protocol: v1
routes:
  - { id: web, sni: [www.example.com, "*.example.com"], pool: web }
  - { host: [example.com], pool: plain }
default_pool: fallback
`);
    assert.equal(validate(doc), true, JSON.stringify(validate.errors));
    assert.equal(doc.window_bytes, '32KiB');
    assert.equal(doc.idle_timeout, '5m');
    const problems: CompileProblem[] = [];
    const spec = compileTcp(doc as TcpConfig, ['listeners', 0, 'tcp'], new Set(['web', 'plain', 'fallback']), problems);
    assert.deepEqual(problems, []);
    assert.deepEqual([spec.windowBytes, spec.windowTimeoutMs, spec.proxyProtocol], [32 * 1024, 2000, 'v1']);
    for (const bad of [
      { routes: [{ pool: 'x' }] },
      { routes: [{ sni: ['a b'], pool: 'x' }] },
      { routes: [], proxy_protocol: 'v3' },
      { routes: [], windows: 1 },
    ]) assert.equal(validate(bad), false, JSON.stringify(bad));
  });

  test('problems name the key path: unknown pools, duplicate ids, bounds', () => {
    const problems: CompileProblem[] = [];
    compileTcp(
      {
        ...base,
        window_bytes: '2MiB',
        routes: [
          { id: 'r', sni: ['a'], pool: 'nope' },
          { id: 'r', host: ['b'], pool: 'a' },
        ],
        default_pool: 'gone',
      },
      ['listeners', 0, 'tcp'],
      new Set(['a']),
      problems,
    );
    assert.deepEqual(
      problems.map((p) => p.path.join('.')),
      ['listeners.0.tcp.routes.0.pool', 'listeners.0.tcp.routes.1.id', 'listeners.0.tcp.default_pool', 'listeners.0.tcp.window_bytes'],
    );
    const none: CompileProblem[] = [];
    compileTcp(base, ['listeners', 0, 'tcp'], new Set(), none);
    assert.deepEqual(none.map((p) => p.path.join('.')), ['listeners.0.tcp.routes']);
  });
});

describe('PROXY protocol header', () => {
  test('v1 for IPv4 (a mapped IPv6 address sent as IPv4), IPv6, and UNKNOWN', () => {
    assert.equal(
      proxyV1({ remoteAddress: '::ffff:10.0.0.1', remotePort: 5555, localAddress: '127.0.0.1', localPort: 443 }).toString(),
      'PROXY TCP4 10.0.0.1 127.0.0.1 5555 443\r\n',
    );
    assert.equal(
      proxyV1({ remoteAddress: '::1', remotePort: 1, localAddress: '::1', localPort: 2 }).toString(),
      'PROXY TCP6 ::1 ::1 1 2\r\n',
    );
    assert.equal(proxyV1({ remoteAddress: '::1', remotePort: 1, localAddress: '10.0.0.1', localPort: 2 }).toString(), 'PROXY UNKNOWN\r\n');
  });

  test('v2: signature, PROXY over TCP4, addresses and ports', () => {
    const h = proxyV2({ remoteAddress: '10.1.2.3', remotePort: 0x1234, localAddress: '192.168.0.1', localPort: 443 });
    assert.equal(h.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a');
    assert.equal(h[12], 0x21);
    assert.equal(h[13], 0x11);
    assert.equal(h.readUInt16BE(14), 12);
    assert.deepEqual([...h.subarray(16, 24)], [10, 1, 2, 3, 192, 168, 0, 1]);
    assert.equal(h.readUInt16BE(24), 0x1234);
    assert.equal(h.readUInt16BE(26), 443);
    assert.equal(h.length, 28);
    const v6 = proxyV2({ remoteAddress: '::1', remotePort: 1, localAddress: '::2', localPort: 2 });
    assert.equal(v6[13], 0x21);
    assert.equal(v6.length, 16 + 36);
    assert.equal(v6[16 + 15], 1);
    assert.equal(v6[16 + 31], 2);
  });
});

test('header values are trimmed by hand: long runs of spaces and tabs, no backtracking regex', () => {
  const spaces = ' \t'.repeat(16 * 1024 - 64);
  const head = Buffer.from(`GET / HTTP/1.1\r\nX:${spaces}x\r\nHost:${' \t'.repeat(100)}h.example.com \t\r\n\r\n`);
  assert.deepEqual(parseHttpHead(head), { method: 'GET', target: '/', host: 'h.example.com' });
});
