/**
 * downstreamResponseHeaders (src/proxy/headers.ts) builds the downstream header list from the
 * fields undici parsed (issue 11 item 4: decoded once, by undici): names lower case, as undici,
 * Envoy and HAProxy give them; a repeated field stays repeated, in its order; hop-by-hop fields
 * and those a Connection field names go; Via is appended to; x-request-id is ours.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { Client, type Dispatcher } from 'undici';
import type { ResponseHeaders } from '../../src/proxy/forward.ts';
import { downstreamResponseHeaders } from '../../src/proxy/headers.ts';

/** What undici's HTTP/1.1 client hands a dispatch handler for `rawHead`, sent by a real server. */
async function parsedBy(rawHead: string): Promise<ResponseHeaders> {
  const server = createServer();
  server.on('connection', (socket) => {
    socket.once('data', () => socket.end(Buffer.from(`${rawHead}\r\n\r\nok`, 'latin1')));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const client = new Client(`http://127.0.0.1:${port}`);
  try {
    return await new Promise<ResponseHeaders>((resolve, reject) => {
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: () => {},
        onResponseData: () => {},
        onResponseEnd: () => {},
        onResponseStart: (_c, _s, headers) => resolve(headers as ResponseHeaders),
        onResponseError: (_c, err) => reject(err),
      };
      client.dispatch({ method: 'GET', path: '/' }, handler);
    });
  } finally {
    await client.close().catch(() => {});
    server.close();
  }
}

test('undici parsed fields in, the downstream header list out', async () => {
  const headers = await parsedBy(
    [
      'HTTP/1.1 200 OK',
      'Content-Type: text/plain',
      'Set-Cookie: a=1',
      'Connection: keep-alive, X-Secret',
      'X-Secret: no',
      'Keep-Alive: timeout=5',
      'Set-Cookie: b=2',
      'Via: 1.1 upstream',
      'X-Request-Id: theirs',
      'X-Latin: caf\u00e9',
      'Content-Length: 2',
    ].join('\r\n'),
  );
  assert.deepEqual(downstreamResponseHeaders(headers, 'ours'), [
    'content-type', 'text/plain',
    'set-cookie', 'a=1',
    'set-cookie', 'b=2',
    'x-latin', 'caf\u00e9',
    'content-length', '2',
    'via', '1.1 upstream, 1.1 manifold',
    'x-request-id', 'ours',
  ]);
});

test('no Connection field: only the fixed hop-by-hop list is dropped; pseudo-headers never pass', () => {
  assert.deepEqual(
    downstreamResponseHeaders({ ':status': '200', 'content-length': '2', upgrade: 'h2c', via: ['1.0 a', '1.1 b'] }, 'r'),
    ['content-length', '2', 'via', '1.0 a, 1.1 b, 1.1 manifold', 'x-request-id', 'r'],
  );
});
