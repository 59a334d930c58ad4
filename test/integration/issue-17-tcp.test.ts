/**
 * Issue 17, item 2: a TCP listener routes connections by their first bytes and pipes bytes
 * both ways. Real sockets throughout: TLS targets are node:tls servers with self-signed
 * certificates made by openssl at test time, and each TLS client completes its handshake with
 * the target's own certificate — which it could not if the ClientHello had not reached the
 * target intact (the gateway holds no key). Pools are built as the runtime builds them:
 * config text → compiled pool specs → `Registry.provision`.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { loadConfigText } from '../../src/config/load.ts';
import type { CompileProblem } from '../../src/lib/problem.ts';
import { type TcpClose, type TcpOpen, TcpProxy } from '../../src/tcp/proxy.ts';
import { compileTcp, type TcpConfig } from '../../src/tcp/spec.ts';
import type { Pool } from '../../src/upstream/pool.ts';
import { Registry } from '../../src/upstream/registry.ts';
import { selfSigned } from '../helpers/certs.ts';
import {
  blackholeAddress,
  cleanupsAfter,
  deadAddress,
  listenLocal,
  startUpstream,
  type Upstream,
  until,
} from '../helpers/index.ts';

const cleanups = cleanupsAfter();

const listen = (server: Server) => listenLocal(server, cleanups);

interface TlsTarget {
  port: number;
  cert: Buffer;
  /** The SNI each accepted connection's ClientHello carried, as the target's own TLS stack read it. */
  servernames: Array<string | false | null>;
}

/** A TLS server that answers each chunk with `<label>:<chunk>`. */
async function tlsTarget(dir: string, name: string, label: string): Promise<TlsTarget> {
  const { key, cert } = selfSigned(dir, name);
  const servernames: Array<string | false | null> = [];
  const server = createTlsServer({ key, cert }, (s: TLSSocket) => {
    servernames.push(s.servername);
    s.on('error', () => {});
    s.on('data', (c: Buffer) => s.write(`${label}:${c}`));
  });
  return { port: await listen(server), cert, servernames };
}

/** Plain TCP targets: an echo (half-close respected), one that speaks first, one that records. */
async function echoTarget(): Promise<number> {
  return listen(
    createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      s.pipe(s);
    }),
  );
}

async function bannerTarget(): Promise<number> {
  return listen(
    createServer((s) => {
      s.on('error', () => {});
      s.write('BANNER ready\r\n');
      s.on('data', (c: Buffer) => s.write(`got ${c}`));
    }),
  );
}

async function recordingTarget(): Promise<{ port: number; seen: Buffer[] }> {
  const seen: Buffer[] = [];
  const port = await listen(
    createServer((s) => {
      s.on('error', () => {});
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.includes('hello')) {
          seen.push(buf);
          s.end('recorded');
        }
      });
    }),
  );
  return { port, seen };
}

let dir: string;
let a: TlsTarget;
let b: TlsTarget;
let plain: Upstream;
let echoPort: number;
let bannerPort: number;
let recorder: { port: number; seen: Buffer[] };
let dead: string;
let hole: string;
let registry: Registry;
let pools: Map<string, Pool>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'manifold-tcp-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  a = await tlsTarget(dir, 'a.example.com', 'A');
  b = await tlsTarget(dir, 'b.example.com', 'B');
  plain = await startUpstream((req, res) => res.end(`plain saw ${req.headers.host}`));
  cleanups.push(() => plain.close());
  echoPort = await echoTarget();
  bannerPort = await bannerTarget();
  recorder = await recordingTarget();
  dead = await deadAddress();
  const bh = await blackholeAddress();
  cleanups.push(() => bh.close());
  hole = bh.url;
  const yaml = `
pools:
  a: { targets: [http://127.0.0.1:${a.port}] }
  b: { targets: [http://127.0.0.1:${b.port}] }
  plain: { targets: [${plain.url}] }
  echo: { targets: [http://127.0.0.1:${echoPort}] }
  banner: { targets: [http://127.0.0.1:${bannerPort}] }
  recorder: { targets: [http://127.0.0.1:${recorder.port}] }
  retry:
    targets: [${dead}, http://127.0.0.1:${echoPort}]
    selector: round-robin
    passive: { failures: 1, ejection: 1m }
  slow:
    targets: [${hole}, http://127.0.0.1:${echoPort}]
    selector: round-robin
  hole: { targets: [${hole}] }
  deadonly: { targets: [${await deadAddress()}] }
`;
  const { compiled } = loadConfigText(yaml, 'test.yaml', { env: {} });
  registry = new Registry();
  cleanups.push(() => registry.destroy());
  pools = registry.provision(compiled.pools);
});

const DEFAULTS = { window_bytes: '32KiB', window_timeout: '3s', idle_timeout: '5m', connect_timeout: '2s' } as const;

async function startProxy(
  config: Partial<TcpConfig> & Pick<TcpConfig, 'routes'>,
): Promise<{ port: number; proxy: TcpProxy; reports: TcpClose[]; connects: TcpOpen[] }> {
  const problems: CompileProblem[] = [];
  const spec = compileTcp({ ...DEFAULTS, ...config }, ['listeners', 0, 'tcp'], new Set(pools.keys()), problems);
  assert.deepEqual(problems, []);
  const reports: TcpClose[] = [];
  const connects: TcpOpen[] = [];
  const proxy = new TcpProxy({
    listener: 'tcp-test',
    spec,
    pool: (n) => pools.get(n),
    onConnect: (o) => connects.push(o),
    onClose: (r) => reports.push(r),
  });
  const port = await proxy.listen(0, '127.0.0.1');
  cleanups.push(() => proxy.close());
  return { port, proxy, reports, connects };
}

/** Reads from `s` until `pred(text so far)`; resolves with the text. */
function readUntil(s: Socket, pred: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (c: Buffer) => {
      text += c.toString();
      if (pred(text)) {
        s.off('data', onData);
        resolve(text);
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
  });
}

async function tlsExchange(port: number, servername: string, ca: Buffer, message: string): Promise<{ reply: string; cn: string }> {
  const c = tlsConnect({ host: '127.0.0.1', port, servername, ca });
  c.on('error', () => {});
  await once(c, 'secureConnect');
  assert.equal(c.authorized, true, 'the target certificate verified end to end');
  const cn = String(c.getPeerCertificate().subject.CN);
  c.write(message);
  const reply = await readUntil(c, (t) => t.includes(message));
  c.destroy();
  return { reply, cn };
}

test('two TLS clients routed by SNI to two pools, TLS not terminated', async () => {
  const { port, reports } = await startProxy({
    routes: [
      { id: 'to-a', sni: ['a.example.com'], pool: 'a' },
      { id: 'to-b', sni: ['*.example.com'], pool: 'b' },
    ],
  });
  const [ra, rb] = await Promise.all([
    tlsExchange(port, 'a.example.com', a.cert, 'ping-a'),
    tlsExchange(port, 'b.example.com', b.cert, 'ping-b'),
  ]);
  assert.deepEqual(ra, { reply: 'A:ping-a', cn: 'a.example.com' });
  assert.deepEqual(rb, { reply: 'B:ping-b', cn: 'b.example.com' });
  // The targets' own TLS stacks read the SNI: the ClientHello reached them as the client sent it.
  assert.deepEqual(a.servernames, ['a.example.com']);
  assert.deepEqual(b.servernames, ['b.example.com']);
  await until(() => reports.length === 2, 'two reports');
  const byRoute = Object.fromEntries(reports.map((r) => [r.route, r]));
  assert.equal(byRoute['to-a'].target, `127.0.0.1:${a.port}`);
  assert.equal(byRoute['to-b'].pool, 'b');
  for (const r of reports) {
    assert.equal(r.sniffed, 'tls');
    assert.ok(r.bytesIn > 100 && r.bytesOut > 100, `bytes counted both ways: ${r.bytesIn}/${r.bytesOut}`);
  }
});

test('a TLS name no route takes, with no default pool: an unrecognized_name alert, no target contacted', async () => {
  const { port, reports } = await startProxy({ routes: [{ sni: ['a.example.com'], pool: 'a' }] });
  const before = a.servernames.length;
  const c = tlsConnect({ host: '127.0.0.1', port, servername: 'other.test', ca: a.cert });
  const [err] = (await once(c, 'error')) as [Error & { code?: string }];
  assert.match(`${err.code} ${err.message}`, /unrecognized name/i);
  await until(() => reports.length === 1, 'a report');
  assert.equal(reports[0].error, 'ROUTE_NOT_FOUND');
  assert.equal(reports[0].route, null);
  assert.equal(a.servernames.length, before);
});

test('a plain HTTP/1.1 connection routed by Host; an unknown Host gets a 404 JSON error', async () => {
  const { port, reports } = await startProxy({
    routes: [
      { sni: ['a.example.com'], pool: 'a' },
      { id: 'web', host: ['plain.example.com'], pool: 'plain' },
    ],
  });
  const get = (host: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/hi', headers: { host }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
  assert.deepEqual(await get('Plain.Example.com:8080'), { status: 200, body: 'plain saw Plain.Example.com:8080' });
  const miss = await get('nobody.example.com');
  assert.equal(miss.status, 404);
  assert.equal(JSON.parse(miss.body).error.code, 'ROUTE_NOT_FOUND');
  await until(() => reports.length === 2, 'two reports');
  assert.equal(reports.find((r) => r.route === 'web')?.sniffed, 'http');
});

test('a client that sends nothing: after the window timeout, the default pool (a server-speaks-first protocol)', async () => {
  const { port, reports } = await startProxy({
    window_timeout: '150ms',
    routes: [{ sni: ['a.example.com'], pool: 'a' }],
    default_pool: 'banner',
  });
  const c = netConnect(port, '127.0.0.1');
  const banner = await readUntil(c, (t) => t.includes('\r\n'));
  assert.equal(banner, 'BANNER ready\r\n');
  c.write('x');
  assert.equal(await readUntil(c, (t) => t.includes('got x')), 'got x');
  c.destroy();
  await until(() => reports.length === 1, 'a report');
  assert.equal(reports[0].route, 'default');
  assert.equal(reports[0].sniffed, 'unknown');
});

test('a client that sends nothing, with no default pool: closed after the window timeout', async () => {
  const { port, reports } = await startProxy({ window_timeout: '100ms', routes: [{ sni: ['a.example.com'], pool: 'a' }] });
  const c = netConnect(port, '127.0.0.1');
  let got = 0;
  c.on('data', (d: Buffer) => (got += d.length));
  await once(c, 'close');
  assert.equal(got, 0);
  await until(() => reports.length === 1, 'a report');
  assert.equal(reports[0].error, 'ROUTE_NOT_FOUND');
});

test('a first target that refuses: the next target serves the connection, the refusal counts in passive health', async () => {
  const { port, reports } = await startProxy({ routes: [], default_pool: 'retry' });
  for (let i = 0; i < 3; i++) {
    const c = netConnect(port, '127.0.0.1');
    c.write(`\x00ping-${i}`);
    assert.equal(await readUntil(c, (t) => t.includes(`ping-${i}`)), `\x00ping-${i}`);
    c.destroy();
  }
  await until(() => reports.length === 3, 'three reports');
  assert.ok(reports.every((r) => r.target === `127.0.0.1:${echoPort}`));
  const deadId = new URL(dead).host;
  const stats = registry.stats().find((s) => s.pool === 'retry' && s.id === deadId)!;
  assert.equal(stats.failures, 1, 'refused once, then ejected (passive failures: 1)');
  assert.equal(stats.ejected, true);
  assert.equal(stats.inflight, 0);
});

test('16 MiB both ways, byte-identical, half-close relayed', async () => {
  const { port, proxy, reports, connects } = await startProxy({ routes: [], default_pool: 'echo' });
  const SIZE = 16 * 1024 * 1024;
  const c = netConnect(port, '127.0.0.1');
  const sent = createHash('sha256');
  const got = createHash('sha256');
  let received = 0;
  c.on('data', (d: Buffer) => {
    got.update(d);
    received += d.length;
  });
  const ended = once(c, 'end');
  // A first byte that is neither TLS nor HTTP: routed at once, no window wait.
  const first = Buffer.from([0]);
  sent.update(first);
  c.write(first);
  for (let off = 0; off < SIZE; off += 64 * 1024) {
    const chunk = randomBytes(64 * 1024);
    sent.update(chunk);
    if (!c.write(chunk)) await once(c, 'drain');
    if (off === SIZE / 2) {
      // Mid-transfer: the open connection's bytes so far are readable (a live byte rate).
      const open = [...proxy.connections()];
      assert.equal(open.length, 1);
      assert.equal(open[0].route, 'default');
      assert.ok(open[0].bytesIn > 0 && open[0].bytesIn <= SIZE / 2 + 64 * 1024 + 1, `in so far: ${open[0].bytesIn}`);
      assert.equal(proxy.open, 1);
    }
  }
  c.end(); // half-close: the echo still sends what it has, then ends
  await ended;
  assert.equal(received, SIZE + 1);
  assert.equal(got.digest('hex'), sent.digest('hex'));
  await until(() => reports.length === 1, 'a report');
  assert.equal(reports[0].bytesIn, SIZE + 1);
  assert.equal(reports[0].bytesOut, SIZE + 1);
  assert.equal(reports[0].error, null);
  assert.deepEqual(connects.map((o) => [o.route, o.target]), [['default', `127.0.0.1:${echoPort}`]]);
  assert.equal(proxy.open, 0);
  assert.equal(proxy.accepted, 1);
  c.destroy();
});

test('PROXY protocol v1 (and v2): the target sees the client address first, then its bytes', async () => {
  const v1 = await startProxy({ routes: [], default_pool: 'recorder', proxy_protocol: 'v1' });
  const c = netConnect(v1.port, '127.0.0.1');
  await once(c, 'connect');
  c.write('\x00hello');
  assert.equal(await readUntil(c, (t) => t.includes('recorded')), 'recorded');
  assert.equal(recorder.seen.at(-1)!.toString('latin1'), `PROXY TCP4 127.0.0.1 127.0.0.1 ${c.localPort} ${v1.port}\r\n\x00hello`);
  c.destroy();

  const v2 = await startProxy({ routes: [], default_pool: 'recorder', proxy_protocol: 'v2' });
  const d = netConnect(v2.port, '127.0.0.1');
  await once(d, 'connect');
  d.write('\x00hello');
  await readUntil(d, (t) => t.includes('recorded'));
  const seen = recorder.seen.at(-1)!;
  assert.equal(seen.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a');
  assert.equal(seen.readUInt16BE(24), d.localPort);
  assert.equal(seen.readUInt16BE(26), v2.port);
  assert.equal(seen.subarray(28).toString('latin1'), '\x00hello');
  d.destroy();
});

test('a target whose connect hangs: connect_timeout, then the next target; counted against it', async () => {
  const { port, reports } = await startProxy({ connect_timeout: '200ms', routes: [], default_pool: 'slow' });
  for (let i = 0; i < 2; i++) {
    const c = netConnect(port, '127.0.0.1');
    c.write(`\x00slow-${i}`);
    assert.equal(await readUntil(c, (t) => t.includes(`slow-${i}`)), `\x00slow-${i}`);
    c.destroy();
  }
  await until(() => reports.length === 2, 'two reports');
  const holeId = new URL(hole).host;
  const stats = registry.stats().find((s) => s.pool === 'slow' && s.id === holeId)!;
  assert.equal(stats.failures, 1, 'round robin tried the hanging target once, first or second');
  assert.equal(stats.inflight, 0);
});

test('a connect in flight when the listener shuts down: nothing leaks, the target is not blamed', async () => {
  const { port, proxy, reports } = await startProxy({ connect_timeout: '5s', routes: [], default_pool: 'hole' });
  const holeId = new URL(hole).host;
  const target = pools.get('hole')!.targets[0];
  const c = netConnect(port, '127.0.0.1');
  c.on('error', () => {});
  c.write('\x00x');
  await until(() => target.inflight === 1, 'a connect in flight');
  await proxy.close(0);
  await once(c, 'close');
  await until(() => reports.length === 1, 'a report');
  assert.equal(reports[0].target, null);
  const stats = registry.stats().find((s) => s.pool === 'hole' && s.id === holeId)!;
  assert.deepEqual([stats.inflight, stats.failures, stats.cancelled], [0, 0, 1]);
});

test('idle_timeout: no byte either way for that long closes both sides', async () => {
  const { port, reports } = await startProxy({ idle_timeout: '200ms', routes: [], default_pool: 'echo' });
  const c = netConnect(port, '127.0.0.1');
  c.write('\x00idle');
  await readUntil(c, (t) => t.includes('idle'));
  await once(c, 'close');
  await until(() => reports.length === 1, 'a report');
  assert.equal(reports[0].error, 'IDLE_TIMEOUT');
  assert.equal(reports[0].bytesOut, 5);
});

test('a client that half-closes before its bytes decide: judged as they are, relayed, answer still delivered', async () => {
  const { port, reports } = await startProxy({ routes: [{ host: ['x'], pool: 'plain' }], default_pool: 'echo' });
  const c = netConnect(port, '127.0.0.1');
  let text = '';
  c.on('data', (d: Buffer) => (text += d));
  c.end('GET / HTTP/1.1\r\nHost: x'); // no blank line: never a complete head
  await once(c, 'end');
  assert.equal(text, 'GET / HTTP/1.1\r\nHost: x');
  await until(() => reports.length === 1, 'a report');
  assert.deepEqual([reports[0].route, reports[0].sniffed, reports[0].error], ['default', 'unknown', null]);
  c.destroy();
});

test('every target of the pool refuses: an HTTP client gets 502 TARGET_UNREACHABLE, a pool not served 503', async () => {
  const { port, reports } = await startProxy({
    routes: [
      { host: ['dead.example.com'], pool: 'deadonly' },
      { host: ['gone.example.com'], pool: 'echo' },
    ],
  });
  const ask = async (host: string) => {
    const c = netConnect(port, '127.0.0.1');
    c.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    let text = '';
    c.on('data', (d: Buffer) => (text += d));
    await once(c, 'end');
    c.destroy();
    return text;
  };
  const dead = await ask('dead.example.com');
  assert.match(dead, /^HTTP\/1\.1 502 /);
  assert.equal(JSON.parse(dead.slice(dead.indexOf('\r\n\r\n') + 4)).error.code, 'TARGET_UNREACHABLE');
  await until(() => reports.length === 1, 'a report');
  assert.deepEqual([reports[0].route, reports[0].target, reports[0].error], ['tcp-route-0', null, 'TARGET_UNREACHABLE']);
  // A pool the current snapshot does not serve (removed by a reload while the listener kept its spec).
  const echo = pools.get('echo')!;
  pools.delete('echo');
  try {
    const gone = await ask('gone.example.com');
    assert.match(gone, /^HTTP\/1\.1 503 /);
    assert.match(gone, /"NO_TARGET_AVAILABLE"/);
  } finally {
    pools.set('echo', echo);
  }
});

test('handle() takes sockets from a listener of its own (not allowHalfOpen): half-close still relayed', async () => {
  const { proxy, reports } = await startProxy({ routes: [], default_pool: 'echo' });
  const port = await listen(createServer((s) => proxy.handle(s)));
  const c = netConnect(port, '127.0.0.1');
  let text = '';
  c.on('data', (d: Buffer) => (text += d));
  c.end('\x00after FIN, the answer still comes');
  await once(c, 'end');
  assert.equal(text, '\x00after FIN, the answer still comes');
  await until(() => reports.length === 1, 'a report');
  assert.equal(reports[0].error, null);
  c.destroy();
});
