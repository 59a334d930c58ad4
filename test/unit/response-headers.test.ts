/**
 * downstreamResponseHeaders (src/proxy/headers.ts) decodes undici's raw header buffers in one
 * pass (issue 11 item 4): casing, order and duplicates survive, hop-by-hop headers and those a
 * Connection header names go, Via is appended to, x-request-id is ours.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { downstreamResponseHeaders } from '../../src/proxy/headers.ts';

const b = (s: string) => Buffer.from(s, 'latin1');

test('raw buffers in, the downstream header list out', () => {
  const raw = [
    b('Content-Type'), b('text/plain'),
    b('Set-Cookie'), b('a=1'),
    b('Connection'), b('keep-alive, X-Secret'),
    b('X-Secret'), b('no'),
    b('Keep-Alive'), b('timeout=5'),
    b('Set-Cookie'), b('b=2'),
    b('Via'), b('1.1 upstream'),
    b('X-Request-Id'), b('theirs'),
    b('X-Latin'), b('caf\u00e9'),
    'Transfer-Encoding', 'chunked',
  ];
  assert.deepEqual(downstreamResponseHeaders(raw, 'ours'), [
    'Content-Type', 'text/plain',
    'Set-Cookie', 'a=1',
    'Set-Cookie', 'b=2',
    'X-Latin', 'caf\u00e9',
    'via', '1.1 upstream, 1.1 manifold',
    'x-request-id', 'ours',
  ]);
});

test('no Connection header: only the fixed hop-by-hop list is dropped', () => {
  assert.deepEqual(downstreamResponseHeaders([b('Content-Length'), b('2'), b('Upgrade'), b('h2c')], 'r'), [
    'Content-Length', '2',
    'via', '1.1 manifold',
    'x-request-id', 'r',
  ]);
});
