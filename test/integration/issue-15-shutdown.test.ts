/**
 * Issue 15, item 6: a graceful shutdown must not reset keep-alive clients. Before this change
 * the drain closed every idle keep-alive connection at once (http.Server.close() does), so a
 * client writing its next request on one got ECONNRESET or an empty close: this test's second
 * round saw no answer on any of its 20 connections. Now connections stop being accepted, a
 * request that arrives on an open one during `shutdown.accept_grace` is answered with
 * `Connection: close`, and only then are the idle ones closed.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { startGateway, startUpstream } from '../helpers/index.ts';

/** Writes one request on `socket` and reads its whole answer (Content-Length bodies only). */
function exchange(socket: Socket, path = '/x'): Promise<{ head: string; body: string } | Error> {
  return new Promise((resolve) => {
    let buf = '';
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      done({ head, body: buf.slice(end + 4, end + 4 + length) });
    };
    const onEnd = () => done(new Error(`closed without an answer (${JSON.stringify(buf)})`));
    const onError = (err: Error) => done(err);
    const done = (r: { head: string; body: string } | Error) => {
      socket.off('data', onData).off('end', onEnd).off('error', onError);
      resolve(r);
    };
    socket.on('data', onData).on('end', onEnd).on('error', onError);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: gw\r\n\r\n`);
  });
}

test('SIGTERM-style drain: requests on open keep-alive connections are answered, with Connection: close', async (t) => {
  const target = await startUpstream((_req, res) => res.end('ok'));
  t.after(() => target.close());
  const gw = await startGateway(`
pools:
  p: { targets: [${target.url}] }
routes:
  - match: {}
    proxy: { pool: p }
`);
  const sockets = await Promise.all(
    Array.from(
      { length: 20 },
      () =>
        new Promise<Socket>((resolve, reject) => {
          const s = connect(gw.port, '127.0.0.1', () => resolve(s));
          s.once('error', reject);
        }),
    ),
  );
  t.after(() => sockets.forEach((s) => s.destroy()));
  for (const r of await Promise.all(sockets.map((s) => exchange(s)))) {
    assert.ok(!(r instanceof Error), String(r));
    assert.match(r.head, /^HTTP\/1\.1 200/);
    assert.doesNotMatch(r.head, /connection: close/i);
  }
  // Every connection is idle now. Start the drain and, in the same tick, send the next request
  // on each: the race a busy keep-alive client runs at every shutdown.
  const closing = gw.runtime.close(5000, 2000);
  const second = await Promise.all(sockets.map((s) => exchange(s)));
  for (const r of second) {
    assert.ok(!(r instanceof Error), `a keep-alive request during the drain failed: ${String(r)}`);
    assert.match(r.head, /^HTTP\/1\.1 200/);
    assert.match(r.head, /connection: close/i);
    assert.equal(r.body, 'ok');
  }
  // New connections are refused from the start of the drain.
  const refused = await new Promise<Error | null>((resolve) => {
    const s = connect(gw.port, '127.0.0.1', () => {
      s.destroy();
      resolve(null);
    });
    s.once('error', resolve);
  });
  assert.equal((refused as NodeJS.ErrnoException | null)?.code, 'ECONNREFUSED');
  // Each connection was closed after its answer, so the accept grace ends early.
  await closing;
});

test('a `respond: { ready: true }` route answers 503 NOT_READY from the start of the drain', async (t) => {
  const gw = await startGateway(`
routes:
  - match: { path: /ready }
    respond: { ready: true, body: ok }
`);
  const probe = await new Promise<Socket>((resolve, reject) => {
    const s = connect(gw.port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  t.after(() => probe.destroy());
  const up = await exchange(probe, '/ready');
  assert.ok(!(up instanceof Error), String(up));
  assert.match(up.head, /^HTTP\/1\.1 200/);
  assert.equal(up.body, 'ok');
  // The load balancer's kept-alive probe connection, during the drain.
  const closing = gw.runtime.close(5000, 2000);
  const down = await exchange(probe, '/ready');
  assert.ok(!(down instanceof Error), String(down));
  assert.match(down.head, /^HTTP\/1\.1 503/);
  assert.equal(JSON.parse(down.body).error.code, 'NOT_READY');
  await closing;
});
