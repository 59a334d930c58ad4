/**
 * Issue 17, item 2 wired in: `listeners[].mode: tcp` in a real gateway — in this process
 * (`startGateway`) and as the spawned CLI with `--workers 2` (every worker binds the listener,
 * `reusePort`). Two TLS clients are routed by SNI to two pools and complete their handshakes
 * with each target's own certificate (the gateway holds no key: the ClientHello reached the
 * target intact); an HTTP/1.1 connection goes by Host; a silent client reaches the default
 * pool after the window; a refused connect moves on to the next target. Every exchange runs on
 * a raw socket whose bytes the client counts, so `/metrics` must show exactly those numbers
 * per listener, route and target. `local_addresses` applies: the targets see 127.0.0.2 and
 * 127.0.0.3 as the sources.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { selfSigned } from '../helpers/certs.ts';
import {
  cleanupsAfter,
  cliPort,
  configProblems,
  deadAddress,
  freePort,
  type Gateway,
  listenLocal,
  scratch,
  startOnFreePorts,
  spawnCli,
  startGateway,
  until,
} from '../helpers/index.ts';
import { parseExposition, total } from '../helpers/prom.ts';

const linux = process.platform === 'linux';
const cleanups = cleanupsAfter();

const listen = (server: Server, port = 0) => listenLocal(server, cleanups, port);

interface Target {
  port: number;
  /** The source address of each connection the target accepted. */
  sources: string[];
}

interface TlsTarget extends Target {
  cert: Buffer;
  servernames: Array<string | false | null>;
}

/** A TLS server that answers each chunk with `<label>:<chunk>`. */
async function tlsTarget(dir: string, name: string, label: string): Promise<TlsTarget> {
  const { key, cert } = selfSigned(dir, name);
  const t: TlsTarget = { port: 0, cert, servernames: [], sources: [] };
  const server = createTlsServer({ key, cert }, (s: TLSSocket) => {
    t.servernames.push(s.servername);
    s.on('error', () => {});
    s.on('data', (c: Buffer) => s.write(`${label}:${c}`));
  });
  server.on('connection', (s: Socket) => t.sources.push(s.remoteAddress!));
  t.port = await listen(server);
  return t;
}

/** A raw HTTP/1.1 server that answers with the Host it saw and the peer address, then closes. */
async function httpTarget(): Promise<Target> {
  const t: Target = { port: 0, sources: [] };
  t.port = await listen(
    createServer((s) => {
      t.sources.push(s.remoteAddress!);
      s.on('error', () => {});
      let head = '';
      s.on('data', (c: Buffer) => {
        head += c;
        if (!head.includes('\r\n\r\n')) return;
        const host = /\r\nhost: *([^\r]*)/i.exec(head)?.[1] ?? '';
        const body = `web saw ${host}`;
        s.end(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      });
    }),
  );
  return t;
}

/** A server that speaks first (SSH, SMTP): its banner, then an echo of what it gets. */
async function bannerTarget(): Promise<Target> {
  const t: Target = { port: 0, sources: [] };
  t.port = await listen(
    createServer((s) => {
      t.sources.push(s.remoteAddress!);
      s.on('error', () => {});
      s.write('BANNER ready\r\n');
      s.on('data', (c: Buffer) => s.end(`got ${c}`));
    }),
  );
  return t;
}

/** Bytes on the client's raw TCP socket: what the gateway read from it and wrote to it. */
interface Counted {
  sent: number;
  received: number;
}

const add = (a: Counted, b: Counted) => ({ sent: a.sent + b.sent, received: a.received + b.received });

function closed(raw: Socket): Promise<Counted> {
  return new Promise((resolve) => {
    const done = () => resolve({ sent: raw.bytesWritten, received: raw.bytesRead });
    if (raw.destroyed) done();
    else raw.once('close', done);
  });
}

/** A TLS exchange through the gateway on a raw socket: the handshake checks the target's certificate. */
async function tlsExchange(port: number, servername: string, ca: Buffer, message: string): Promise<Counted & { reply: string; cn: string }> {
  const raw = netConnect(port, '127.0.0.1');
  await once(raw, 'connect');
  const ended = closed(raw);
  const s = tlsConnect({ socket: raw, servername, ca });
  await once(s, 'secureConnect');
  const cn = String(s.getPeerCertificate().subject.CN);
  s.write(message);
  const [reply] = (await once(s, 'data')) as [Buffer];
  s.end();
  raw.end();
  return { reply: reply.toString(), cn, ...(await ended) };
}

/** Sends `data` on a raw connection, half-closes, reads everything until the close. */
async function rawExchange(port: number, data: string | null, waitFor?: string): Promise<Counted & { reply: string }> {
  const raw = netConnect(port, '127.0.0.1');
  await once(raw, 'connect');
  const ended = closed(raw);
  let reply = '';
  let answered = false;
  raw.on('data', (c: Buffer) => {
    reply += c;
    if (!answered && waitFor !== undefined && reply.includes(waitFor)) {
      answered = true;
      raw.end('hi');
    }
  });
  if (data !== null) raw.write(data);
  const counted = await ended;
  return { reply, ...counted };
}

let dir: string;
let a: TlsTarget;
let b: TlsTarget;
let web: Target;
let banner: Target;
let dead: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'manifold-tcpl-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  a = await tlsTarget(dir, 'a.example.com', 'A');
  b = await tlsTarget(dir, 'b.example.com', 'B');
  web = await httpTarget();
  banner = await bannerTarget();
  dead = await deadAddress();
});

/** The config of both gateways: `port` for the tcp listener, `extra` top-level keys. */
function yaml(port: number, extra = '', health = ''): string {
  return `
${extra}
log: { level: warn, access: false }
pools:
  a:
    targets: [${dead}, http://127.0.0.1:${a.port}]
    selector: round-robin
    local_addresses: 127.0.0.2-127.0.0.3
    ${health}
  b: { targets: ["http://127.0.0.1:${b.port}"], local_addresses: [127.0.0.2, 127.0.0.3]${health ? `, ${health}` : ''} }
  web: { targets: ["http://127.0.0.1:${web.port}"], local_addresses: 127.0.0.2-127.0.0.3 }
  banner: { targets: ["http://127.0.0.1:${banner.port}"] }
listeners:
  - { name: api, host: 127.0.0.1, port: 0 }
  - name: edge
    host: 127.0.0.1
    port: ${port}
    mode: tcp
    tcp:
      window_timeout: 300ms
      routes:
        - { id: tls-a, sni: [a.example.com], pool: a }
        - { id: tls-b, sni: ["*.b.example.com", b.example.com], pool: b }
        - { id: plain, host: [web.example.com], pool: web }
      default_pool: banner
routes: []
`;
}

/** Runs the four kinds of connection once each (A twice: one of them meets the dead target first). */
async function traffic(port: number): Promise<Record<'a' | 'b' | 'plain' | 'silent', Counted>> {
  const a1 = await tlsExchange(port, 'a.example.com', a.cert, 'one');
  assert.deepEqual([a1.reply, a1.cn], ['A:one', 'a.example.com']);
  const a2 = await tlsExchange(port, 'a.example.com', a.cert, 'two');
  assert.deepEqual([a2.reply, a2.cn], ['A:two', 'a.example.com']);
  const b1 = await tlsExchange(port, 'b.example.com', b.cert, 'three');
  assert.deepEqual([b1.reply, b1.cn], ['B:three', 'b.example.com']);
  const plain = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: web.example.com\r\nConnection: close\r\n\r\n');
  assert.match(plain.reply, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nweb saw web\.example\.com$/);
  // Sends nothing: after window_timeout (300ms) the default pool's target speaks first.
  const silent = await rawExchange(port, null, 'BANNER ready');
  assert.equal(silent.reply, 'BANNER ready\r\ngot hi');
  return { a: add(a1, a2), b: b1, plain, silent };
}

function checkMetrics(text: string, counted: Record<'a' | 'b' | 'plain' | 'silent', Counted>): void {
  const m = parseExposition(text);
  assert.equal(total(m, 'manifold_connections_accepted_total', { listener: 'edge' }), 5);
  assert.equal(total(m, 'manifold_connections_closed_total', { listener: 'edge' }), 5);
  assert.equal(total(m, 'manifold_connections_open', { listener: 'edge' }), 0);
  assert.equal(total(m, 'manifold_connection_duration_seconds_count', { listener: 'edge' }), 5);
  assert.equal(total(m, 'manifold_connections_accepted_total', { listener: 'api' }), 0);
  const bytes = (route: string, target: string, direction: string) =>
    total(m, 'manifold_bytes_total', { route, target, direction });
  const expect: Array<[string, string, Counted]> = [
    ['tls-a', `127.0.0.1:${a.port}`, counted.a],
    ['tls-b', `127.0.0.1:${b.port}`, counted.b],
    ['plain', `127.0.0.1:${web.port}`, counted.plain],
    ['default', `127.0.0.1:${banner.port}`, counted.silent],
  ];
  for (const [route, target, c] of expect) {
    assert.equal(bytes(route, target, 'in'), c.sent, `${route} in`);
    assert.equal(bytes(route, target, 'out'), c.received, `${route} out`);
  }
  // The dead target took no byte: the connect it refused moved on before anything was sent.
  assert.equal(total(m, 'manifold_bytes_total', { target: dead.slice('http://'.length) }), 0);
}

describe('listeners[].mode: tcp in a gateway (issue 17)', { skip: !linux && 'needs Linux loopback (127.0.0.0/8 local)', timeout: 90_000 }, () => {
  test('one process: SNI, Host, silence, refusal, local_addresses and exact figures', async () => {
    a.sources.length = 0;
    b.sources.length = 0;
    web.sources.length = 0;
    const gw: Gateway = await startGateway(yaml(0, 'workers: 0\nadmin: { enabled: false }'));
    cleanups.push(() => gw.close());
    const port = gw.ports.edge;
    assert.ok(port > 0 && port !== gw.ports.api);
    assert.equal(gw.port, gw.ports.api, 'the first listener in config order');
    const counted = await traffic(port);
    // The targets' own TLS stacks read the names: the ClientHello arrived as the client sent it.
    assert.deepEqual(a.servernames, ['a.example.com', 'a.example.com']);
    assert.deepEqual(b.servernames, ['b.example.com']);
    // local_addresses: each pool's new connections take its addresses in turn.
    const sources = [...a.sources, ...b.sources, ...web.sources];
    assert.equal(sources.length, 4);
    assert.deepEqual(new Set(sources), new Set(['127.0.0.2', '127.0.0.3']), sources.join(' '));
    // Pool b's one connection is its rotation's first; pool a's first took 127.0.0.2 for the
    // refused connect, so its target saw the next address.
    assert.deepEqual([a.sources[0], b.sources[0], web.sources[0]], ['127.0.0.3', '127.0.0.2', '127.0.0.2']);
    assert.equal(banner.sources.at(-1), '127.0.0.1', 'a pool without local_addresses: the kernel chooses');
    // The dead target was tried (round robin starts with it) and blamed in passive health.
    const stats = gw.runtime.stats().targets;
    const deadStats = stats.find((t) => t.pool === 'a' && t.url.startsWith(dead));
    assert.ok(deadStats !== undefined && deadStats.failures >= 1, JSON.stringify(stats));
    await until(() => gw.runtime.tcpListeners[0].open === 0, 'connections closed');
    checkMetrics(await gw.runtime.metrics!.registry.metrics(), counted);
    // CONNECT is refused (tcp.connect: refuse, the default): no target is dialed.
    const dialed = [a, b, web, banner].map((t) => t.sources.length);
    const refused = await rawExchange(port, 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: web.example.com\r\n\r\n');
    assert.match(refused.reply, /^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    assert.match(refused.reply, /"code":"METHOD_NOT_ALLOWED","message":"CONNECT 127\.0\.0\.1:22 refused: a tcp listener tunnels to its own pools only"/);
    assert.deepEqual([a, b, web, banner].map((t) => t.sources.length), dialed);
    // A reload: the new tcp block applies to the next connection.
    const { loadConfigText } = await import('../../src/config/load.ts');
    const next = loadConfigText(yaml(0).replace('{ id: plain, host: [web.example.com], pool: web }', '{ id: plain, host: [web.example.com], pool: banner }'), 'test.yaml', { env: {} });
    gw.runtime.apply(next.config);
    const after = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: web.example.com\r\n\r\n');
    assert.match(after.reply, /^BANNER ready\r\ngot GET \/ HTTP\/1\.1/);

    // An open connection's bytes are counted while it lasts (the live byte rate), once.
    const raw = netConnect(port, '127.0.0.1');
    await once(raw, 'connect');
    const s = tlsConnect({ socket: raw, servername: 'b.example.com', ca: b.cert });
    await once(s, 'secureConnect');
    s.write('open');
    await once(s, 'data');
    const before = parseExposition(await gw.runtime.metrics!.registry.metrics());
    const bIn = (m: ReturnType<typeof parseExposition>) => total(m, 'manifold_bytes_total', { route: 'tls-b', direction: 'in' });
    const sentSoFar = counted.b.sent + raw.bytesWritten;
    assert.equal(bIn(before), sentSoFar, 'counted before the close');
    assert.equal(total(before, 'manifold_connections_open', { listener: 'edge' }), 1);

    // Shutdown: no new connection; the open one gets the grace, then is cut.
    const t0 = performance.now();
    const closing = gw.runtime.close(400, 0);
    await once(raw, 'close');
    await closing;
    const took = performance.now() - t0;
    assert.ok(took >= 350, `cut after the grace, not before (${took} ms)`);
    await assert.rejects(rawExchange(port, 'x'), /ECONNREFUSED/);
    const final = parseExposition(await gw.runtime.metrics!.registry.metrics());
    // (The client's TLS close_notify, written after the cut, never reached the gateway.)
    assert.equal(bIn(final), sentSoFar, 'each byte counted once');
  });

  test('--workers 2: every worker serves the tcp listener; /metrics sums them exactly', async () => {
    const files = scratch('manifold-tcpl-cli-');
    const { cli, port, metricsPort, file } = await startOnFreePorts(async () => {
      const port = await freePort();
      const metricsPort = await freePort();
      // `health.type: tcp`: connect-only checks, which a TLS target passes (an HTTP request would fail on it).
      const file = files.configFile(
        yaml(port, `admin: { enabled: false }\nmetrics: { port: ${metricsPort}, host: 127.0.0.1 }`, 'health: { type: tcp, interval: 100ms, fall: 1, rise: 1 }'),
      );
      const cli = spawnCli(['--config', file, '--workers', '2', '--log-level', 'info']);
      try {
        assert.ok((await cliPort(cli)) > 0);
      } catch (err) {
        cli.kill('SIGKILL');
        throw err;
      }
      return { cli, port, metricsPort, file };
    });
    try {
      const down = await until(
        () => cli.logs().find((l) => l.msg === 'target down: health checks fail'),
        'the dead target found down by its connect check',
      );
      assert.equal(down.pool, 'a');
      assert.equal(down.url, dead);
      assert.equal(down.reason, 'ECONNREFUSED');
      let counted = await traffic(port);
      // More connections than workers, so both take some (the kernel spreads reusePort accepts).
      for (let i = 0; i < 3; i++) {
        const more = await traffic(port);
        counted = {
          a: add(counted.a, more.a),
          b: add(counted.b, more.b),
          plain: add(counted.plain, more.plain),
          silent: add(counted.silent, more.silent),
        };
      }
      const text = await until(async () => {
        const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
        const body = await res.text();
        const m = parseExposition(body);
        return total(m, 'manifold_connections_closed_total', { listener: 'edge' }) === 20 ? body : null;
      }, 'the 20 connections counted');
      const m = parseExposition(text);
      // Checks ran all along (100ms): only the dead target was ever down.
      assert.deepEqual(
        cli.logs().filter((l) => l.msg === 'target down: health checks fail').map((l) => `${l.pool} ${l.url}`),
        [`a ${dead}`],
      );
      assert.equal(total(m, 'manifold_connections_accepted_total', { listener: 'edge' }), 20);
      assert.equal(total(m, 'manifold_connections_open', { listener: 'edge' }), 0);
      const bytes = (route: string, direction: string) => total(m, 'manifold_bytes_total', { route, direction });
      assert.equal(bytes('tls-a', 'in'), counted.a.sent);
      assert.equal(bytes('tls-a', 'out'), counted.a.received);
      assert.equal(bytes('tls-b', 'in'), counted.b.sent);
      assert.equal(bytes('plain', 'out'), counted.plain.received);
      assert.equal(bytes('default', 'in'), counted.silent.sent);
      assert.equal(bytes('default', 'out'), counted.silent.received);

      // A reload (SIGHUP) takes a changed tcp block at once, in every worker; the socket stays.
      const text2 = readFileSync(file, 'utf8');
      const changed = text2.replace('{ id: plain, host: [web.example.com], pool: web }', '{ id: plain, host: [web.example.com], pool: banner }');
      assert.notEqual(changed, text2);
      writeFileSync(file, changed);
      cli.child.kill('SIGHUP');
      await until(() => cli.logs().find((l) => l.msg === 'config reloaded'), 'the reload');
      assert.equal(cli.logs().find((l) => l.msg === 'config reloaded; these keys take effect only after a restart'), undefined);
      for (let i = 0; i < 4; i++) {
        const after = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: web.example.com\r\n\r\n');
        assert.match(after.reply, /^BANNER ready\r\ngot GET \/ HTTP\/1\.1/, `connection ${i}`);
      }
    } finally {
      cli.kill();
      await cli.exited;
    }
  });
});

describe('tcp listener config errors name the key and the file', () => {
  const base = `
pools: { p: { targets: ["http://127.0.0.1:1"] } }
listeners:
`;
  const problem = (yamlText: string) => configProblems(yamlText).map((p) => `${p.path}: ${p.message}`);
  test('a tcp listener takes no tls, http2 or redirect_https, and needs its tcp block', () => {
    const got = configProblems(`${base}  - { port: 0, mode: tcp, http2: true, redirect_https: {}, tcp: { default_pool: p } }
  - { port: 0, mode: tcp }
`);
    assert.ok(got.every((p) => p.source.startsWith('test.yaml')), JSON.stringify(got));
    const text = got.map((p) => `${p.path}: ${p.message}`);
    assert.ok(text.some((t) => /^listeners\[0\]\.http2: a tcp listener does not speak HTTP\/2/.test(t)), text.join('\n'));
    assert.ok(text.some((t) => /^listeners\[0\]\.redirect_https: a tcp listener/.test(t)), text.join('\n'));
    assert.ok(text.some((t) => /^listeners\[1\]\.tcp: a tcp listener needs a `tcp` block/.test(t)), text.join('\n'));
  });

  test('a typo in a route key is named (snis), besides the route missing sni or host', () => {
    const text = problem(`${base}  - { port: 0, mode: tcp, tcp: { routes: [{ snis: [a.example.com], pool: p }] } }
`);
    assert.deepEqual(text.sort(), [
      'listeners[0].tcp.routes[0].snis: unknown key',
      'listeners[0].tcp.routes[0]: needs `sni` (TLS names) or `host` (HTTP names), and a `pool`',
    ]);
  });

  test('tls on a tcp listener', () => {
    const text = problem(`${base}  - { port: 0, mode: tcp, tls: { cert: /nonexistent.crt, key: /nonexistent.key }, tcp: { default_pool: p } }
`);
    assert.ok(text.some((t) => /^listeners\[0\]\.tls: a tcp listener does not terminate TLS/.test(t)), text.join('\n'));
  });

  test('unknown keys and modes, unknown pools, a tcp block on an http listener', () => {
    // The shape first (schema.ts)…
    const shape = problem(`${base}  - { port: 0, mode: tcp, tcp: { default_pool: p, windw: 1 } }
  - { port: 0, mode: udp }
`);
    assert.deepEqual(shape, ['listeners[0].tcp.windw: unknown key', 'listeners[1].mode: must be one of http, tcp']);
    // …then what needs the whole config (compile.ts).
    const text = problem(`${base}  - { name: raw, port: 0, mode: tcp, tcp: { routes: [{ sni: [x.example], pool: nope }], default_pool: p } }
  - { port: 0, tcp: { default_pool: p } }
`);
    const want = [
      /^listeners\[0\]\.tcp\.routes\[0\]\.pool: unknown pool "nope"/,
      /^listeners\[1\]\.tcp: only a `mode: tcp` listener takes a `tcp` block/,
    ];
    for (const w of want) assert.ok(text.some((t) => w.test(t)), `${w}\n${text.join('\n')}`);
  });

  test('a route naming a tcp listener', () => {
    const text = problem(`${base}  - { name: raw, port: 0, mode: tcp, tcp: { default_pool: p } }
  - { name: web, port: 0 }
routes:
  - { match: { listener: raw }, respond: { status: 200 } }
`);
    assert.ok(text.some((t) => /^routes\[0\]\.match\.listener: listener "raw" is a tcp listener/.test(t)), text.join('\n'));
  });
});
