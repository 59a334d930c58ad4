/** Issue 17: the live line's arithmetic, and the byte counter's cached series across a reset. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { liveFields, liveText, liveTotals } from '../../src/observability/live-line.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { parseExposition, total } from '../helpers/prom.ts';

test('live fields: rates over the interval, totals as read', () => {
  const f = liveFields(
    { sessions: 10, open: 2, bytesIn: 1024, bytesOut: 0 },
    { sessions: 30, open: 5, bytesIn: 1024 + 4 * 1024 * 2, bytesOut: 10 * 1024 },
    2,
  );
  assert.deepEqual(f, {
    sessions_per_s: 10,
    sessions_total: 30,
    sessions_current: 5,
    bytes_in: 1024 + 8192,
    bytes_out: 10240,
    kb_in_per_s: 4,
    kb_out_per_s: 5,
  });
  assert.equal(liveText(f), '10 sessions/s, 30 total, 5 current, in 9216 B (4 KB/s), out 10240 B (5 KB/s)');
  // A restarted process reads lower totals: no negative rate.
  assert.equal(liveFields({ sessions: 9, open: 0, bytesIn: 9, bytesOut: 9 }, { sessions: 1, open: 0, bytesIn: 1, bytesOut: 1 }, 1).sessions_per_s, 0);
});

test('bytes and connections read back from the exposition, before and after a reset', async () => {
  const m = new Metrics({ processMetrics: false });
  m.connectionOpened('default');
  m.connectionOpened('default');
  m.connectionClosed('default', 0.5);
  m.bytes('api', 't1', 100, 1000);
  m.bytes('api', 't1', 1, 10);
  m.bytes(null, null, 5, 0);
  let s = parseExposition(await m.registry.metrics());
  assert.equal(total(s, 'manifold_bytes_total', { route: 'api', target: 't1', direction: 'in' }), 101);
  assert.equal(total(s, 'manifold_bytes_total', { route: 'api', target: 't1', direction: 'out' }), 1010);
  assert.equal(total(s, 'manifold_bytes_total', { route: '_none', target: '_none', direction: 'in' }), 5);
  assert.equal(total(s, 'manifold_connections_open', { listener: 'default' }), 1);
  assert.deepEqual(liveTotals(await m.registry.getMetricsAsJSON()), { sessions: 2, open: 1, bytesIn: 106, bytesOut: 1010 });
  m.registry.resetMetrics();
  m.bytes('api', 't1', 7, 70);
  s = parseExposition(await m.registry.metrics());
  assert.equal(total(s, 'manifold_bytes_total', { route: 'api', target: 't1', direction: 'in' }), 7);
  assert.equal(total(s, 'manifold_bytes_total', { route: 'api', target: 't1', direction: 'out' }), 70);
});
