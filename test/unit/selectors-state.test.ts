/**
 * Issue 3: what selectors stand on — passive ejection (growing backoff, the pool's cap, panic),
 * the mergeable latency histogram, and the admin overlay that keeps pool changes apart from
 * the config file.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PassiveSpec } from '../../src/upstream/spec.ts';
import { loadConfigText } from '../../src/config/load.ts';
import { applyOverlay, change, emptyOverlay } from '../../src/cluster/membership.ts';
import { PoolHealth, TargetState } from '../../src/upstream/state.ts';
import { Histogram, mergeTargetStats, type WorkerStats } from '../../src/upstream/stats.ts';

function pool(n: number, passive: Partial<PassiveSpec> = {}, panic = 50) {
  const group = new PoolHealth('p');
  group.passive = { failures: 3, ejectionMs: 1000, maxEjectionMs: 8000, maxEjectedPercent: 50, ...passive };
  group.panicThreshold = panic;
  const states = Array.from({ length: n }, (_, i) => {
    const s = new TargetState(group, `t${i}`, `http://t${i}`);
    group.members.add(s);
    return s;
  });
  return { group, states };
}

describe('passive ejection', () => {
  test('consecutive failures eject; a success in between resets the streak', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const { states } = pool(4);
    const s = states[0];
    s.failed(null);
    s.failed(null);
    s.succeeded(1);
    s.failed(null);
    s.failed(null);
    assert.equal(s.usable, true);
    s.failed(null);
    assert.equal(s.outlier.ejected, true);
    assert.equal(s.usable, false);
    t.mock.timers.tick(999);
    assert.equal(s.usable, false);
    t.mock.timers.tick(1);
    assert.equal(s.usable, true);
    for (const x of states) x.dispose();
  });

  test('each repeat ejects for twice as long, up to max_ejection; forgiven after staying in', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const { states } = pool(4);
    const s = states[0];
    const ejectionLength = () => {
      for (let i = 0; i < 3; i++) s.failed(null);
      let ms = 0;
      while (!s.usable) {
        t.mock.timers.tick(500);
        ms += 500;
      }
      return ms;
    };
    assert.deepEqual(
      [ejectionLength(), ejectionLength(), ejectionLength(), ejectionLength(), ejectionLength()],
      [1000, 2000, 4000, 8000, 8000],
    );
    t.mock.timers.tick(8001);
    assert.equal(ejectionLength(), 1000);
    for (const x of states) x.dispose();
  });

  test('at most max_ejected percent of the pool is ejected (one always may be)', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const { group, states } = pool(4, { failures: 1, maxEjectedPercent: 50 });
    for (const s of states) s.failed(null);
    assert.equal(group.ejected, 2);
    const small = pool(2, { failures: 1, maxEjectedPercent: 10 });
    for (const s of small.states) s.failed(null);
    assert.equal(small.group.ejected, 1);
    for (const x of [...states, ...small.states]) x.dispose();
  });

  test('without a passive block nothing is ejected; client cancels never count', () => {
    const { group, states } = pool(2);
    group.passive = null;
    for (let i = 0; i < 10; i++) states[0].failed(null);
    assert.equal(states[0].usable, true);
    states[1].cancel();
    assert.deepEqual([states[1].requests, states[1].failures, states[1].cancelled], [1, 0, 1]);
  });

  test('panic: below the threshold of usable targets, the pool uses them all', () => {
    const { group, states } = pool(4, {}, 50);
    states[0].setUp(false);
    assert.equal(group.panic, false); // 3 of 4 usable
    states[1].setUp(false);
    assert.equal(group.panic, false); // 2 of 4: not below 50%
    states[2].setUp(false);
    assert.equal(group.panic, true); // 1 of 4
    states[2].setUp(true);
    assert.equal(group.panic, false);
    group.panicThreshold = 0;
    for (const s of states) s.setUp(false);
    assert.equal(group.panic, false, 'threshold 0: never');
  });
});

describe('latency histogram', () => {
  test('quantiles within one bucket (~9%), and merging is adding', () => {
    const h = new Histogram();
    for (let i = 1; i <= 1000; i++) h.record(i / 10); // 0.1 .. 100 ms
    const p50 = h.quantile(0.5)!;
    const p99 = h.quantile(0.99)!;
    assert.ok(Math.abs(p50 - 50) / 50 < 0.1, `p50 ${p50}`);
    assert.ok(Math.abs(p99 - 99) / 99 < 0.1, `p99 ${p99}`);
    const report = (pool: string, ms: number[]): WorkerStats => {
      const x = new Histogram();
      for (const m of ms) x.record(m);
      return {
        version: 1,
        downstream: { success: 0, failed: 0 },
        targets: [
          {
            pool,
            id: 't',
            url: 'http://t',
            requests: ms.length,
            failures: 1,
            cancelled: 0,
            inflight: 1,
            ejected: pool === 'p',
            ejections: 0,
            retired: false,
            latency: x.toSparse(),
          },
        ],
      };
    };
    const merged = mergeTargetStats([report('p', [1, 1, 1]), report('p', [100])]).get('p\u0000t')!;
    assert.deepEqual([merged.requests, merged.failures, merged.inflight, merged.ejected], [4, 2, 2, 2]);
    assert.ok(merged.latency.quantile(0.5)! < 1.1);
    assert.ok(merged.latency.quantile(0.99)! > 90);
    assert.equal(new Histogram().quantile(0.5), null);
  });
});

describe('admin overlay', () => {
  const file = loadConfigText(
    `
pools:
  api: { targets: [http://a:1, http://b:1] }
  old: { targets: [http://c:1] }
routes: []
`,
    'f.yaml',
    { env: {} },
  ).config;

  test('adds, removes and re-weights by target id; the file is not modified', () => {
    let o = emptyOverlay();
    o = change.addTarget(o, 'api', { url: 'http://d:1', weight: 2 });
    o = change.removeTarget(o, 'api', 'a:1');
    o = change.setTarget(o, 'api', { url: 'http://b:1', weight: 5 });
    const served = applyOverlay(file, o);
    assert.deepEqual(served.pools.api.targets, [
      { url: 'http://b:1', weight: 5 },
      { url: 'http://d:1', weight: 2 },
    ]);
    assert.deepEqual(file.pools.api.targets, ['http://a:1', 'http://b:1']);
  });

  test('on a reloaded file: new file targets appear, admin changes stay, deleted pools stay deleted', () => {
    let o = emptyOverlay();
    o = change.removeTarget(o, 'api', 'a:1');
    o = change.deletePool(o, 'old', file);
    o = change.createPool(o, 'new', { ...file.pools.old, targets: ['http://e:1'] });
    o = change.addTarget(o, 'new', { url: 'http://f:1' });
    const reloaded = structuredClone(file);
    reloaded.pools.api.targets.push('http://g:1');
    const served = applyOverlay(reloaded, o);
    assert.deepEqual(served.pools.api.targets, ['http://b:1', 'http://g:1']);
    assert.equal(served.pools.old, undefined);
    assert.deepEqual(served.pools.new.targets, ['http://e:1', { url: 'http://f:1' }]);
    o = change.deletePool(o, 'new', file);
    assert.equal(applyOverlay(reloaded, o).pools.new, undefined);
  });
});
