/**
 * Issue 7: the request-path cells (src/observability/cells.ts) must export exactly what
 * prom-client's own Counter and Histogram export for the same observations — text, JSON and
 * the cluster sum — so that swapping them in changed nothing a scraper can see.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { CellCounter, CellHistogram } from '../../src/observability/cells.ts';

const BOUNDS = [0.001, 0.01, 0.1, 1];
// Values on, between, below and above the bounds; `le` means "at most", so 0.01 counts in 0.01.
const VALUES = [0, 0.0005, 0.001, 0.005, 0.01, 0.01, 0.05, 0.1, 0.5, 1, 2, 30];

function pair() {
  const ours = new Registry();
  const theirs = new Registry();
  const c1 = new CellCounter(ours, 'x_total', 'help x', ['route', 'code']);
  const h1 = new CellHistogram(ours, 'y_seconds', 'help y', ['route'], BOUNDS);
  const c2 = new Counter({
    name: 'x_total',
    help: 'help x',
    labelNames: ['route', 'code'],
    registers: [theirs],
  });
  const h2 = new Histogram({
    name: 'y_seconds',
    help: 'help y',
    labelNames: ['route'],
    buckets: BOUNDS,
    registers: [theirs],
  });
  VALUES.forEach((v, i) => {
    const route = i % 3 === 0 ? 'a' : 'b';
    const code = i % 2 === 0 ? '2xx' : '5xx';
    c1.inc([route, code], i + 1);
    c2.inc({ route, code }, i + 1);
    h1.observe([route], v);
    h2.observe({ route }, v);
  });
  return { ours, theirs };
}

const sorted = (text: string) => text.split('\n').filter(Boolean).sort();

test('the exposition text is the same as prom-client’s', async () => {
  const { ours, theirs } = pair();
  const text = await ours.metrics();
  assert.deepEqual(sorted(text), sorted(await theirs.metrics()));
  assert.match(text, /^y_seconds_bucket\{le="0.01",route="a"\} \d+$/m, 'le first, as prom-client writes it');
});

test('JSON snapshots sum across processes like prom-client’s', async () => {
  const a = pair();
  const b = pair();
  const ours = AggregatorRegistry.aggregate([
    await a.ours.getMetricsAsJSON(),
    await b.ours.getMetricsAsJSON(),
  ]);
  const theirs = AggregatorRegistry.aggregate([
    await a.theirs.getMetricsAsJSON(),
    await b.theirs.getMetricsAsJSON(),
  ]);
  assert.deepEqual(sorted(await ours.metrics()), sorted(await theirs.metrics()));
  // One concrete number: route b has 8 of the 12 values, doubled by the sum.
  assert.match(await ours.metrics(), /^y_seconds_count\{route="b"\} 16$/m);
});

test('reset() empties a family; a name is registered once', async () => {
  const r = new Registry();
  const c = new CellCounter(r, 'z_total', 'z', ['k']);
  c.inc(['v']);
  c.reset();
  assert.doesNotMatch(await r.metrics(), /z_total\{/);
  assert.throws(() => new CellCounter(r, 'z_total', 'again', ['k']), /already been registered/);
});
