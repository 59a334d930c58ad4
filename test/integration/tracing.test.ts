/**
 * Issue 7: W3C trace context. What the targets receive is checked at real upstreams: the
 * downstream's trace id and flags, a new span id for every attempt and every delivery of a
 * deferred request, `tracestate` passed on (and dropped with a trace Manifold starts), the
 * access log's `trace_id`; `tracing.enabled: false` leaves both headers as they came.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseTraceparent } from '../../src/observability/trace.ts';
import { startGateway, startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const INCOMING = `00-${TRACE}-${PARENT}-01`;
const SPAN = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function traceparentOf(headers: IncomingHttpHeaders): { trace: string; span: string; flags: string } {
  const m = SPAN.exec(String(headers.traceparent));
  assert.ok(m, `a version-00 traceparent, got ${headers.traceparent}`);
  return { trace: m[1], span: m[2], flags: m[3] };
}

describe('parseTraceparent (W3C Trace Context §3.2)', () => {
  test('valid values', () => {
    assert.deepEqual(parseTraceparent(INCOMING), { traceId: TRACE, parentId: PARENT, flags: '01' });
    assert.equal(parseTraceparent(`00-${TRACE}-${PARENT}-00`)?.flags, '00');
    // A later version may carry more fields; only the sampled bit of its flags is kept.
    assert.deepEqual(parseTraceparent(`01-${TRACE}-${PARENT}-03-whatever`), {
      traceId: TRACE,
      parentId: PARENT,
      flags: '01',
    });
    assert.equal(parseTraceparent(`cc-${TRACE}-${PARENT}-02`)?.flags, '00');
  });

  test('invalid values', () => {
    for (const bad of [
      '',
      `ff-${TRACE}-${PARENT}-01`, // version ff is forbidden
      `00-${TRACE}-${PARENT}-01-extra`, // version 00 has exactly four fields
      `00-${'0'.repeat(32)}-${PARENT}-01`, // all-zero trace id
      `00-${TRACE}-${'0'.repeat(16)}-01`, // all-zero parent id
      `00-${TRACE.toUpperCase()}-${PARENT}-01`, // upper case
      `00-${TRACE}-${PARENT}-0g`,
      `00_${TRACE}-${PARENT}-01`,
      `00-${TRACE}-${PARENT}-01, 00-${TRACE}-${PARENT}-01`, // two headers, joined by node
      `01-${TRACE}-${PARENT}-01x`,
    ])
      assert.equal(parseTraceparent(bad), null, bad);
  });
});

describe('trace context on proxied attempts', () => {
  test('the downstream trace id and flags go on with a new span id; tracestate passes; access log trace_id', async (t) => {
    const up = await startUpstream();
    t.after(() => up.close());
    const gw = await startGateway(`
pools: { p: { targets: [${up.url}] } }
routes: [{ id: r, match: { path: /* }, proxy: { pool: p } }]
`);
    t.after(() => gw.close());
    const r = await send(`${gw.url}/x`, {
      headers: { traceparent: INCOMING, tracestate: 'vendor=abc,other=1' },
    });
    assert.equal(r.status, 200);
    const seen = up.requests[0].headers;
    const tp = traceparentOf(seen);
    assert.equal(tp.trace, TRACE);
    assert.equal(tp.flags, '01');
    assert.notEqual(tp.span, PARENT, 'the attempt is a span of its own');
    assert.equal(seen.tracestate, 'vendor=abc,other=1');
    const line = await until(() => gw.logs.access()[0], 'the access log line');
    assert.equal(line.trace_id, TRACE);
    assert.equal(line.req_id, r.headers['x-request-id']);
  });

  test('every attempt of one request has its own span id, all in the same trace', async (t) => {
    const failing = await startUpstream((_req, res) => {
      res.statusCode = 503;
      res.end('busy');
    });
    t.after(() => failing.close());
    const ok = await startUpstream();
    t.after(() => ok.close());
    const gw = await startGateway(`
pools: { p: { targets: [${failing.url}, ${ok.url}] } }
routes:
  - id: r
    match: { path: /* }
    proxy: { pool: p, strategy: failover, order: listed, max_attempts: 2, terminal: [200] }
`);
    t.after(() => gw.close());
    const r = await send(`${gw.url}/x`, { headers: { traceparent: INCOMING } });
    assert.equal(r.status, 200);
    const first = traceparentOf(failing.requests[0].headers);
    const second = traceparentOf(ok.requests[0].headers);
    assert.equal(first.trace, TRACE);
    assert.equal(second.trace, TRACE);
    assert.notEqual(first.span, second.span);
    assert.notEqual(first.span, PARENT);
  });

  test('no or an invalid traceparent: a new trace (flags from tracing.sampled), tracestate dropped', async (t) => {
    const up = await startUpstream();
    t.after(() => up.close());
    for (const sampled of [false, true]) {
      const gw = await startGateway(`
tracing: { sampled: ${sampled} }
pools: { p: { targets: [${up.url}] } }
routes: [{ id: r, match: { path: /* }, proxy: { pool: p } }]
`);
      try {
        const before = up.requests.length;
        await send(`${gw.url}/a`, { headers: { tracestate: 'vendor=abc' } });
        await send(`${gw.url}/b`, {
          headers: { traceparent: `ff-${TRACE}-${PARENT}-01`, tracestate: 'vendor=abc' },
        });
        await send(`${gw.url}/c`);
        const seen = up.requests.slice(before).map((r) => r.headers);
        const ids = seen.map((h) => {
          const tp = traceparentOf(h);
          assert.equal(tp.flags, sampled ? '01' : '00');
          assert.notEqual(tp.trace, TRACE);
          assert.equal(h.tracestate, undefined, 'no tracestate without the traceparent it belonged to');
          return tp.trace;
        });
        assert.equal(new Set(ids).size, 3, 'each request starts a trace of its own');
        const logged = await until(
          () => (gw.logs.access().length === 3 ? gw.logs.access() : null),
          'three log lines',
        );
        assert.deepEqual(
          logged.map((l) => l.trace_id),
          ids,
        );
      } finally {
        await gw.close();
      }
    }
  });

  test('tracing.enabled: false leaves traceparent and tracestate as they came', async (t) => {
    const up = await startUpstream();
    t.after(() => up.close());
    const gw = await startGateway(`
tracing: { enabled: false }
pools: { p: { targets: [${up.url}] } }
routes: [{ id: r, match: { path: /* }, proxy: { pool: p } }]
`);
    t.after(() => gw.close());
    await send(`${gw.url}/x`, { headers: { traceparent: 'not-a-traceparent', tracestate: 'a=1' } });
    await send(`${gw.url}/y`);
    assert.equal(up.requests[0].headers.traceparent, 'not-a-traceparent');
    assert.equal(up.requests[0].headers.tracestate, 'a=1');
    assert.equal(up.requests[1].headers.traceparent, undefined);
    assert.equal((await until(() => gw.logs.access()[0], 'log')).trace_id, undefined);
  });
});

describe('trace context on deliveries of deferred requests', () => {
  test('each delivery attempt is a new span of the trace the request came with', async (t) => {
    let calls = 0;
    const receiver = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.statusCode = ++calls === 1 ? 500 : 200;
        res.end();
      });
    });
    t.after(() => receiver.close());
    const dir = mkdtempSync(join(tmpdir(), 'manifold-trace-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const gw = await startGateway(`
queue: { path: ${join(dir, 'q.db')} }
pools: { sink: { targets: [${receiver.url}] } }
routes:
  - id: hooks
    match: { path: /* }
    defer: { pool: sink, backoff: { base: 10ms, max: 10ms, jitter: none } }
`);
    t.after(() => gw.close());
    const r = await send(`${gw.url}/hook`, {
      method: 'POST',
      headers: { traceparent: INCOMING, tracestate: 'vendor=abc' },
      body: '{}',
    });
    assert.equal(r.status, 202);
    await until(() => receiver.requests.length === 2, 'a failed delivery and its retry');
    const [first, second] = receiver.requests.map((q) => q.headers);
    const a = traceparentOf(first);
    const b = traceparentOf(second);
    assert.equal(a.trace, TRACE);
    assert.equal(b.trace, TRACE);
    assert.equal(a.flags, '01');
    assert.notEqual(a.span, b.span);
    assert.notEqual(a.span, PARENT);
    assert.equal(first.tracestate, 'vendor=abc');
    assert.equal(second['x-request-id'], r.headers['x-request-id']);
  });
});
