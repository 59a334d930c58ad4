/**
 * Layer7Router's command line (issue 17, src/compat/layer7router.ts): the real CLI spawned with
 * `bin/router.sh`'s flags (loopback addresses and free ports instead of the seed's LAN ones).
 * Bytes pass both ways intact whatever Host a request names (the seed would dial that host:
 * Manifold sends everything to the backend); new connections to the backend alternate between
 * the two source addresses of `-client_base_ip 127.0.0 -client_start_ip 2 -client_end_ip 3`;
 * the live line appears every 2 s with exactly the bytes the clients counted; CONNECT is
 * refused (405) with nothing dialed; a bad flag is args4j's message, the usage and exit 1.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type Cli, freePort, spawnCli, until } from '../helpers/index.ts';

const linux = process.platform === 'linux';

interface Backend {
  port: number;
  /** Source address of each connection, in accept order. */
  sources: string[];
  server: Server;
}

/**
 * Reads an HTTP/1.1 request with a content-length body, answers 200 with the body's sha256
 * and the body back, then closes.
 */
async function startBackend(): Promise<Backend> {
  const b: Backend = { port: 0, sources: [], server: createServer() };
  b.server.on('connection', (s: Socket) => {
    b.sources.push(s.remoteAddress!);
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const length = Number(/content-length: *(\d+)/i.exec(buf.subarray(0, end).toString())?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      const body = buf.subarray(end + 4, end + 4 + length);
      const sum = createHash('sha256').update(body).digest('hex');
      s.end(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nx-sha256: ${sum}\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`), body]));
    });
  });
  b.server.listen(0, '127.0.0.1');
  await once(b.server, 'listening');
  b.port = (b.server.address() as { port: number }).port;
  return b;
}

/** One raw connection: sends `data`, reads until the close; the client's own byte counts. */
async function exchange(port: number, data: Buffer): Promise<{ reply: Buffer; sent: number; received: number }> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.write(data);
  await once(s, 'close');
  return { reply: Buffer.concat(chunks), sent: s.bytesWritten, received: s.bytesRead };
}

let backend: Backend;
before(async () => {
  backend = await startBackend();
});
after(() => new Promise((r) => backend.server.close(r)));

/** bin/router.sh's flags, on loopback: the listener's address is the seed's 0.0.0.0 unless env says otherwise. */
function routerSh(listenPort: number, threads: string): string[] {
  return [
    '-listen_port', String(listenPort),
    '-backend_host', '127.0.0.1', '-backend_port', String(backend.port),
    '-client_base_ip', '127.0.0', '-client_start_ip', '2', '-client_end_ip', '3',
    '-num_threads', threads, '-buffer_size', '32768', '-flush',
  ];
}

const LOOPBACK = { MANIFOLD_LISTENERS__0__HOST: '127.0.0.1' };

async function listening(cli: Cli): Promise<Record<string, unknown>> {
  return until(() => cli.logs().find((l) => l.msg === 'manifold listening'), () => `the CLI to listen: ${cli.stderr}`, 20_000);
}

describe('Layer7Router command line (issue 17)', { skip: !linux && 'needs Linux loopback (127.0.0.0/8 local)', timeout: 90_000 }, () => {
  test("router.sh's flags: to the backend only, alternating sources, the live line, CONNECT refused", async () => {
    const port = await freePort();
    const cli = spawnCli(routerSh(port, '1'), LOOPBACK);
    try {
      const ready = await listening(cli);
      assert.deepEqual(ready.listeners, { layer7router: port });
      // The seed's first line, and a note for each flag taken and ignored.
      const msgs = cli.logs().map((l) => String(l.msg));
      assert.ok(msgs[0].startsWith(`Options [listen_port=${port}, backend_host=127.0.0.1, backend_port=${backend.port}, client_base_ip=127.0.0, client_start_ip=2, client_end_ip=3,`), msgs[0]);
      assert.ok(msgs.some((m) => m.startsWith('-buffer_size is accepted and ignored: ')), msgs.join('\n'));
      assert.ok(msgs.some((m) => m.startsWith('-flush is accepted and ignored: ')), msgs.join('\n'));

      let sent = 0;
      let received = 0;
      for (let i = 0; i < 4; i++) {
        // Each names another host: Layer7Router would dial it; Manifold sends it to the backend.
        const body = randomBytes(96 * 1024);
        const head = `POST /upload/${i} HTTP/1.1\r\nHost: elsewhere-${i}.example:8${i}\r\ncontent-length: ${body.length}\r\n\r\n`;
        const r = await exchange(port, Buffer.concat([Buffer.from(head), body]));
        const end = r.reply.indexOf('\r\n\r\n');
        const answerHead = r.reply.subarray(0, end).toString();
        assert.match(answerHead, /^HTTP\/1\.1 200 OK\r\n/);
        assert.match(answerHead, new RegExp(`x-sha256: ${createHash('sha256').update(body).digest('hex')}`));
        assert.ok(r.reply.subarray(end + 4).equals(body), 'the body came back intact');
        sent += r.sent;
        received += r.received;
      }
      assert.equal(backend.sources.length, 4);
      assert.deepEqual(new Set(backend.sources), new Set(['127.0.0.2', '127.0.0.3']));
      for (let i = 1; i < 4; i++) assert.notEqual(backend.sources[i], backend.sources[i - 1], backend.sources.join(' '));

      // Every 2 s, the figures of every connection (sessions and bytes each way, as counted by the clients).
      const line = await until(
        () => cli.logs().find((l) => (l.live as Record<string, number> | undefined)?.sessions_total === 4),
        'a live line with the four sessions',
        15_000,
      );
      const live = line.live as Record<string, number>;
      assert.equal(live.bytes_in, sent);
      assert.equal(live.bytes_out, received);
      assert.equal(live.sessions_current, 0);
      assert.match(String(line.msg), /^[\d.]+ sessions\/s, 4 total, 0 current, in \d+ B \([\d.]+ KB\/s\), out \d+ B \([\d.]+ KB\/s\)$/);
      const lines = cli.logs().filter((l) => l.live !== undefined);
      const t0 = Date.parse(String(lines[0].time));
      const t1 = Date.parse(String(lines[1]?.time ?? (await until(() => cli.logs().filter((l) => l.live !== undefined)[1])).time));
      assert.ok(t1 - t0 >= 1900 && t1 - t0 < 5000, `about 2 s apart (${t1 - t0} ms)`);

      // CONNECT: the seed tunnels anywhere; here 405 and nothing dialed.
      const refused = await exchange(port, Buffer.from(`CONNECT 127.0.0.1:${backend.port} HTTP/1.1\r\nHost: 127.0.0.1:${backend.port}\r\n\r\n`));
      assert.match(refused.reply.toString(), /^HTTP\/1\.1 405 Method Not Allowed\r\n[\s\S]*"code":"METHOD_NOT_ALLOWED"/);
      assert.equal(backend.sources.length, 4, 'the backend saw no connection');
    } finally {
      cli.kill();
      assert.equal(await cli.exited, 0);
    }
  });

  test("-t 2 (the seed's alias of -num_threads) runs two workers", async () => {
    const port = await freePort();
    // `-t`: the seed's alias of -num_threads.
    const cli = spawnCli(routerSh(port, '2').map((a) => (a === '-num_threads' ? '-t' : a)), LOOPBACK);
    try {
      const ready = await listening(cli);
      assert.equal(ready.workers, 2);
      const before = backend.sources.length;
      const body = Buffer.from('x'.repeat(1000));
      const r = await exchange(port, Buffer.concat([Buffer.from(`POST / HTTP/1.1\r\nHost: a\r\ncontent-length: ${body.length}\r\n\r\n`), body]));
      assert.match(r.reply.toString(), /^HTTP\/1\.1 200 OK/);
      assert.equal(backend.sources.length, before + 1);
    } finally {
      cli.kill();
      await cli.exited;
    }
  });

  test("a bad value, an unknown flag, a missing operand: args4j's message, the usage, exit 1", async () => {
    const cases: Array<[string[], string]> = [
      [['-listen_port', 'abc'], '"abc" is not a valid value for "-listen_port"'],
      [['-backend_host', '127.0.0.1', '-nope'], '"-nope" is not a valid option'],
      [['-backend_port'], 'Option "-backend_port" takes an operand'],
      [['-flush', 'true'], 'No argument is allowed: true'],
      [['-client_start_ip', '5', '-client_end_ip', '3'], '"-client_end_ip 3" is below "-client_start_ip 5"'],
    ];
    for (const [args, message] of cases) {
      const cli = spawnCli(args);
      assert.equal(await cli.exited, 1, args.join(' '));
      assert.ok(cli.stderr.startsWith(`Layer7Router: ${message}`), cli.stderr);
      assert.match(cli.stderr, /\n -listen_port N +: port\n/);
      assert.equal(cli.stdout, '');
    }
    // A value args4j takes but Manifold's config refuses: the config error names the flag.
    const cli = spawnCli(['-listen_port', '70000']);
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr, /^flag -listen_port: listeners\[0\]\.port: must be <= 65535\n/);
    const foreign = spawnCli(['-client_base_ip', '192.0.2', '-client_start_ip', '7', '-client_end_ip', '8', '-listen_port', '0']);
    assert.equal(await foreign.exited, 1);
    assert.match(foreign.stderr, /flags -client_base_ip -client_start_ip -client_end_ip: pools\.backend\.local_addresses: 192\.0\.2\.7, 192\.0\.2\.8 are not an address of this host/);
  });
});
