/**
 * The TLS suite's own load generators (bench/lib/h2load.ts, bench/lib/handshakes.ts) against a
 * real local node:http2 TLS server: they count only the 200 answers the server really sent,
 * flag anything else, and the handshake loop makes a new, never resumed TLS session each time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { measureHandshakes, parseAnswer } from '../../bench/lib/handshakes.ts';
import { measureH2 } from '../../bench/lib/h2load.ts';
import { testCa } from '../helpers/certs.ts';

let server: Http2SecureServer;
let port: number;
let ca: string;
/** 200 answers the server sent, per path. */
const answered = new Map<string, number>();
let connections = 0;
let resumed = 0;

before(async () => {
  const pki = testCa();
  const leaf = pki.issue('localhost');
  ca = pki.pem;
  server = createSecureServer(
    { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), allowHTTP1: true },
    (req, res) => {
      if (req.url === '/bad') {
        res.writeHead(503, { 'content-length': 0 }).end();
        return;
      }
      if (req.url === '/reset') {
        req.stream?.close(0x2); // INTERNAL_ERROR, no answer
        return;
      }
      if (req.url === '/short') {
        // Promises 10 bytes, sends 2, closes.
        res.writeHead(200, { 'content-length': 10 });
        res.write('ok');
        res.socket?.end();
        return;
      }
      answered.set(req.url ?? '', (answered.get(req.url ?? '') ?? 0) + 1);
      res.writeHead(200, { 'content-length': 2 }).end('ok');
    },
  );
  server.on('secureConnection', (socket: TLSSocket) => {
    connections++;
    if (socket.isSessionReused()) resumed++;
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

after(() => server.close());

test('h2 load counts the 200 answers the server sent, over the sessions asked for', async () => {
  const before = connections;
  const m = await measureH2({
    origin: `https://127.0.0.1:${port}`,
    servername: 'localhost',
    ca,
    paths: ['/h2'],
    sessions: 2,
    streams: 4,
    duration: 1,
  });
  assert.deepEqual(m.problems, []);
  assert.equal(connections - before, 2, 'one TLS connection per session');
  const sent = answered.get('/h2') ?? 0;
  assert.ok(m.ok > 0, 'answers counted');
  // Answers after the window are not counted; at most one per stream slot is in flight then.
  assert.ok(m.ok <= sent && m.ok >= sent - 8, `counted ${m.ok}, server answered ${sent}`);
  assert.equal(m.rps, m.ok / 1);
  assert.ok(m.p50 > 0 && m.p99 >= m.p50);
});

test('h2 load is invalid on another status and on reset streams, and does not count them', async () => {
  const bad = await measureH2({ origin: `https://127.0.0.1:${port}`, ca, servername: 'localhost', paths: ['/bad'], sessions: 1, streams: 2, duration: 0.3 });
  assert.equal(bad.ok, 0);
  assert.match(bad.problems.join('; '), /× status 503/);
  const reset = await measureH2({ origin: `https://127.0.0.1:${port}`, ca, servername: 'localhost', paths: ['/reset'], sessions: 1, streams: 2, duration: 0.3 });
  assert.equal(reset.ok, 0);
  assert.match(reset.problems.join('; '), /stream errors/);
});

test('h2 load against a certificate it cannot verify fails the measurement, not the run', async () => {
  const m = await measureH2({ origin: `https://127.0.0.1:${port}`, ca: testCa('Another CA').pem, servername: 'localhost', paths: ['/h2'], sessions: 1, streams: 1, duration: 0.3 });
  assert.equal(m.ok, 0);
  assert.match(m.problems.join('; '), /certificate/i);
});

test('the handshake loop makes one new, never resumed TLS session per answer', async () => {
  const [c0, r0, a0] = [connections, resumed, answered.get('/hs') ?? 0];
  const m = await measureHandshakes({ host: '127.0.0.1', port, path: '/hs', concurrency: 3, duration: 1, ca, servername: 'localhost' });
  assert.deepEqual(m.problems, []);
  assert.ok(m.ok > 0);
  const made = connections - c0;
  // Every counted answer had its own connection; those still open at the end were not counted.
  assert.ok(made >= m.ok && made <= m.ok + 3, `${made} connections for ${m.ok} answers`);
  assert.equal((answered.get('/hs') ?? 0) - a0, made);
  assert.equal(resumed - r0, 0, 'no session was resumed');
});

test('the handshake loop is invalid on a short body or another status', async () => {
  const short = await measureHandshakes({ host: '127.0.0.1', port, path: '/short', concurrency: 1, duration: 0.3, ca, servername: 'localhost' });
  assert.equal(short.ok, 0);
  assert.match(short.problems.join('; '), /short body \(2 of 10 bytes\)/);
  const bad = await measureHandshakes({ host: '127.0.0.1', port, path: '/bad', concurrency: 1, duration: 0.3, ca, servername: 'localhost' });
  assert.equal(bad.ok, 0);
  assert.match(bad.problems.join('; '), /× status 503/);
});

test('parseAnswer reads the status of a complete answer only', () => {
  assert.deepEqual(parseAnswer(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')), { status: 200 });
  assert.deepEqual(parseAnswer(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok')), { error: 'short body (2 of 3 bytes)' });
  assert.deepEqual(parseAnswer(Buffer.alloc(0)), { error: 'closed without an answer' });
  assert.deepEqual(parseAnswer(Buffer.from('HTTP/1.1 200 OK\r\n')), { error: 'incomplete response head' });
  assert.deepEqual(parseAnswer(Buffer.from('SSH-2.0\r\n\r\n')), { error: 'not an HTTP/1.1 answer' });
});
