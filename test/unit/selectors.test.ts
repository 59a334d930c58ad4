/**
 * Issue 3: the Selector contract, run against every registered selector (STYLE.md §15, as
 * hono's router `common.case.test.ts`), then each selector's own distribution.
 */
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, test } from 'node:test';
import type { Dispatcher } from 'undici';
import { compileHashKey, type PoolSpec, targetSpec } from '../../src/upstream/spec.ts';
import { SELECTOR_NAMES, SELECTORS } from '../../src/upstream/selectors/index.ts';
import type { PickContext, Selector } from '../../src/upstream/selectors/types.ts';
import { PoolHealth, TargetState } from '../../src/upstream/state.ts';
import { Target } from '../../src/upstream/target.ts';

function targets(n: number, weights: number[] = []): Target[] {
  const group = new PoolHealth('p');
  group.panicThreshold = 0;
  return Array.from({ length: n }, (_, i) => {
    const spec = targetSpec({ url: `http://10.0.0.${i + 1}:80`, weight: weights[i] ?? 1 });
    const state = new TargetState(group, spec.id, spec.url);
    group.members.add(state);
    return new Target(spec, null as unknown as Dispatcher, state);
  });
}

function down(t: Target): void {
  t.state.setUp(false);
}

const spec = (key = 'client_ip'): Pick<PoolSpec, 'hashKey'> => ({ hashKey: compileHashKey(key) });
const ctx = (ip: string, headers: IncomingHttpHeaders = {}): PickContext => ({ headers, socket: { remoteAddress: ip } });

function counts(sel: Selector, ts: Target[], n: number, c: (i: number) => PickContext | null = () => null) {
  const out = new Map<string, number>(ts.map((t) => [t.id, 0]));
  for (let i = 0; i < n; i++) {
    const t = sel.select(ts, c(i), null)!;
    out.set(t.id, (out.get(t.id) ?? 0) + 1);
  }
  return [...out.values()];
}

describe('Selector contract', () => {
  for (const name of SELECTOR_NAMES) {
    const make = () => SELECTORS[name](spec());
    describe(name, () => {
      test('no targets, or none available: undefined', () => {
        assert.equal(make().select([], null, null), undefined);
        const ts = targets(3);
        ts.forEach(down);
        assert.equal(make().select(ts, ctx('1.2.3.4'), null), undefined);
      });

      test('never an unavailable target', () => {
        const ts = targets(4);
        down(ts[0]);
        down(ts[2]);
        const sel = make();
        for (let i = 0; i < 200; i++) {
          const t = sel.select(ts, ctx(`10.1.${i >> 8}.${i & 255}`), null)!;
          assert.ok(t === ts[1] || t === ts[3], `picked ${t.id}`);
        }
      });

      test('never a tried target; undefined once all were tried', () => {
        const ts = targets(3);
        const sel = make();
        const tried = new Set<Target>();
        for (let i = 0; i < 3; i++) {
          const t = sel.select(ts, ctx('1.2.3.4'), tried)!;
          assert.ok(t && !tried.has(t));
          tried.add(t);
        }
        assert.equal(sel.select(ts, ctx('1.2.3.4'), tried), undefined);
      });

      test('every available target gets traffic', () => {
        const ts = targets(5);
        const seen = counts(make(), ts, 2000, (i) => ctx(`10.2.${i >> 8}.${i & 255}`));
        assert.ok(seen.every((n) => n > 0), `counts ${seen}`);
      });

      test('panic: when too few are usable, every target is available again', () => {
        const ts = targets(4);
        ts[0].state.pool.panicThreshold = 50;
        ts.slice(0, 3).forEach(down);
        assert.equal(ts[0].state.pool.panic, true);
        const seen = counts(make(), ts, 2000, (i) => ctx(`10.3.${i >> 8}.${i & 255}`));
        assert.ok(seen.every((n) => n > 0), `counts ${seen}`);
      });
    });
  }
});

describe('distributions', () => {
  test('round-robin: exactly even, in order', () => {
    const ts = targets(3);
    const sel = SELECTORS['round-robin']();
    const order = Array.from({ length: 6 }, () => sel.select(ts, null, null)!.id);
    assert.deepEqual(order, [...ts, ...ts].map((t) => t.id));
  });

  test('weighted: smooth, in proportion to weight', () => {
    const ts = targets(3, [5, 1, 1]);
    const sel = SELECTORS.weighted();
    const order = Array.from({ length: 7 }, () => ts.indexOf(sel.select(ts, null, null)!));
    // nginx's documented sequence for 5,1,1.
    assert.deepEqual(order, [0, 0, 1, 0, 2, 0, 0]);
    assert.deepEqual(counts(sel, ts, 7000), [5000, 1000, 1000]);
  });

  test('weighted: an unavailable target’s share goes to the others', () => {
    const ts = targets(3, [2, 1, 1]);
    down(ts[0]);
    assert.deepEqual(counts(SELECTORS.weighted(), ts, 1000), [0, 500, 500]);
  });

  test('random: roughly uniform', () => {
    const seen = counts(SELECTORS.random(), targets(4), 8000);
    for (const n of seen) assert.ok(n > 1700 && n < 2300, `counts ${seen}`);
  });

  test('least-inflight: prefers the less busy, still spreads when equal', () => {
    const ts = targets(3);
    ts[0].inflight = 10;
    ts[1].inflight = 5;
    const sel = SELECTORS['least-inflight']();
    const seen = counts(sel, ts, 3000);
    // The busiest target only wins when both random choices land on it, which P2C never does.
    assert.equal(seen[0], 0);
    assert.ok(seen[2] > seen[1], `counts ${seen}`);
    for (const t of ts) t.inflight = 0;
    const even = counts(sel, ts, 6000);
    for (const n of even) assert.ok(n > 1700 && n < 2300, `counts ${even}`);
  });

  test('hash on client IP: sticky, spread, and only a leaving target’s keys move', () => {
    const ts = targets(4);
    const sel = SELECTORS.hash(spec('client_ip'));
    const ips = Array.from({ length: 4000 }, (_, i) => `192.168.${i >> 8}.${i & 255}`);
    const first = ips.map((ip) => sel.select(ts, ctx(ip), null)!);
    assert.deepEqual(
      ips.map((ip) => sel.select(ts, ctx(ip), null)!),
      first,
      'same key, same target',
    );
    for (const t of ts) {
      const n = first.filter((x) => x === t).length;
      assert.ok(n > 800 && n < 1200, `${t.id} got ${n}`);
    }
    down(ts[1]);
    ips.forEach((ip, i) => {
      const now = sel.select(ts, ctx(ip), null)!;
      if (first[i] !== ts[1]) assert.equal(now, first[i], 'keys of staying targets do not move');
      else assert.notEqual(now, ts[1]);
    });
  });

  test('hash on a header or a cookie; without the key, random', () => {
    const ts = targets(3);
    const byHeader = SELECTORS.hash(spec('header:X-User'));
    const a = byHeader.select(ts, ctx('1.1.1.1', { 'x-user': 'alice' }), null);
    for (let i = 0; i < 50; i++)
      assert.equal(byHeader.select(ts, ctx(`2.2.2.${i}`, { 'x-user': 'alice' }), null), a);
    const byCookie = SELECTORS.hash(spec('cookie:sid'));
    const b = byCookie.select(ts, ctx('1.1.1.1', { cookie: 'x=1; sid=abc; y=2' }), null);
    for (let i = 0; i < 50; i++)
      assert.equal(byCookie.select(ts, ctx(`3.3.3.${i}`, { cookie: `sid=abc; n=${i}` }), null), b);
    const unkeyed = counts(byHeader, ts, 3000, () => ctx('1.1.1.1'));
    for (const n of unkeyed) assert.ok(n > 800, `counts ${unkeyed}`);
  });
});
