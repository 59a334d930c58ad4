/**
 * Issue 7: draining a target. `PATCH /pools/:pool/targets/:id {"drain": true}` stops new
 * attempts and deliveries on it (in-flight ones finish), health checks go on, panic never
 * brings it back; `{"drain": false}` enables it again. Drains come from the config file too,
 * survive a reload and (with `state_file`) a restart, and show in the views and in
 * `manifold_target_drained`. Each gateway test runs in one process and with `--workers 2`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { parseExposition, total } from '../helpers/prom.ts';
import { MODES, type ManagedGateway, spread, startManaged } from './admin-gateway.ts';

interface ErrorBody {
  error: { code: string; message: string };
}

interface TargetView {
  id: string;
  state: string;
  drain: boolean;
  inflight: number;
  weight: number;
}

/**
 * An upstream answering its name. `/slow` is held until `release()`; `/health` answers 500
 * when `sick` (so active checks mark it down) and 200 otherwise.
 */
async function named(name: string, sick = false) {
  const held: ServerResponse[] = [];
  const up = await startUpstream((req, res) => {
    if (req.url === '/slow') {
      held.push(res);
      return;
    }
    if (req.url === '/health') res.statusCode = sick ? 500 : 200;
    res.end(name);
  });
  return Object.assign(up, {
    name,
    held,
    release() {
      for (const res of held.splice(0)) res.end(`${name}-slow`);
    },
    /** Requests other than health checks. */
    traffic: () => up.requests.filter((r: IncomingMessage) => r.url !== '/health').length,
  });
}
type Named = Awaited<ReturnType<typeof named>>;

const idOf = (u: Named) => `127.0.0.1:${u.port}`;

async function targets(gw: ManagedGateway, pool: string): Promise<Map<string, TargetView>> {
  const r = await gw.admin('GET', `/pools/${pool}`);
  assert.equal(r.status, 200, r.text);
  return new Map(r.json<{ pool: { targets: TargetView[] } }>().pool.targets.map((t) => [t.id, t]));
}

async function patch(gw: ManagedGateway, pool: string, u: Named, body: unknown) {
  const r = await gw.admin('PATCH', `/pools/${pool}/targets/${idOf(u)}`, body);
  assert.equal(r.status, 200, r.text);
  return r.json<{ target: TargetView }>().target;
}

async function drained(gw: ManagedGateway, pool: string, u: Named): Promise<number> {
  const r = await gw.admin('GET', '/metrics');
  assert.equal(r.status, 200, r.text);
  return total(parseExposition(r.text), 'manifold_target_drained', { pool, target: idOf(u) });
}

/** Drops the counters that move with traffic, so two listings can be compared. */
const stripped = (s: string) => s.replace(/"latency_ms":\{[^}]*\}|"(requests|inflight)":\d+/g, '');

for (const mode of MODES) {
  describe(`target drain (${mode.name})`, { timeout: 60_000 }, () => {
    let a: Named, b: Named; // rr: round-robin
    let c: Named, d: Named; // pn: panic_threshold 100, both fail their checks
    let e: Named, f: Named; // cf: e drained in the file
    let g: Named, h: Named; // dp: the pool of a defer route
    let i: Named, j: Named; // p50: i drained in the file, j fails its checks
    let dir: string;
    let gw: ManagedGateway;

    const checks = 'health: { path: /health, interval: 100ms, fall: 1, rise: 1 }';
    const yaml = (extraRoute = '') => `
log: { level: warn, access: false }
queue: { path: ${join(dir, 'q.db')} }
pools:
  rr: { targets: [${a.url}, ${b.url}] }
  pn: { panic_threshold: 100, ${checks}, targets: [${c.url}, ${d.url}] }
  cf: { targets: [{ url: ${e.url}, drain: true }, ${f.url}] }
  dp: { targets: [${g.url}, ${h.url}] }
  p50: { ${checks}, targets: [{ url: ${i.url}, drain: true }, ${j.url}] }
routes:
  - { id: hooks, match: { path: /hooks/* }, defer: { pool: dp } }
  - { id: panic, match: { path: /pn/* }, proxy: { pool: pn } }
  - { id: p50, match: { path: /p50/* }, proxy: { pool: p50 } }
  - { id: cfg, match: { path: /cf/* }, proxy: { pool: cf } }
${extraRoute}
  - { id: main, match: { path: /* }, proxy: { pool: rr } }
`;

    before(async () => {
      [a, b, c, d, e, f, g, h, i, j] = await Promise.all([
        named('a'),
        named('b'),
        named('c', true),
        named('d', true),
        named('e'),
        named('f'),
        named('g'),
        named('h'),
        named('i'),
        named('j', true),
      ]);
      dir = mkdtempSync(join(tmpdir(), 'manifold-drain-'));
      gw = await startManaged(yaml(), mode.workers);
    });
    after(async () => {
      await gw?.close();
      await Promise.all([a, b, c, d, e, f, g, h, i, j].map((u) => u?.close()));
      rmSync(dir, { recursive: true, force: true });
    });

    test('drain: true in the config file: no traffic from the start; PATCH {"drain": false} enables it', async () => {
      assert.deepEqual(await spread(gw, 10, '/cf/x'), { f: 10 });
      assert.equal(e.traffic(), 0);
      const listed = await targets(gw, 'cf');
      assert.equal(listed.get(idOf(e))?.drain, true);
      assert.equal(listed.get(idOf(e))?.state, 'up');
      assert.equal(listed.get(idOf(f))?.drain, false);
      assert.equal(await drained(gw, 'cf', e), 1);

      const enabled = await patch(gw, 'cf', e, { drain: false });
      assert.equal(enabled.drain, false);
      assert.equal(enabled.state, 'up');
      const seen = await spread(gw, 20, '/cf/x');
      assert.ok(seen.e > 0 && seen.f > 0, JSON.stringify(seen));
      assert.equal(await drained(gw, 'cf', e), 0);
    });

    test('a drained target of a round-robin pool gets no new request; enabled, it gets traffic again', async () => {
      const before = await spread(gw, 20);
      assert.ok(before.a > 0 && before.b > 0, JSON.stringify(before));

      const t = await patch(gw, 'rr', b, { drain: true });
      assert.equal(t.id, idOf(b));
      assert.equal(t.drain, true);
      assert.equal(t.state, 'up');
      // Every worker serves the change once the call has answered.
      const bBefore = b.traffic();
      assert.deepEqual(await spread(gw, 20), { a: 20 });
      assert.equal(b.traffic(), bBefore);

      // Every view says so; `state` stays the health state.
      const pools = (await gw.admin('GET', '/pools')).json<{
        pools: Array<{ name: string; targets: TargetView[] }>;
      }>();
      const rr = pools.pools.find((p) => p.name === 'rr')!;
      assert.deepEqual(
        rr.targets.map((x) => [x.id, x.state, x.drain]),
        [
          [idOf(a), 'up', false],
          [idOf(b), 'up', true],
        ],
      );
      const detail = (await gw.admin('GET', '/stats/detail')).json<Array<TargetView & { pool: string }>>();
      assert.equal(detail.find((x) => x.pool === 'rr' && x.id === idOf(b))?.drain, true);
      assert.equal(detail.find((x) => x.pool === 'rr' && x.id === idOf(a))?.drain, false);
      assert.equal(await drained(gw, 'rr', b), 1);
      assert.equal(await drained(gw, 'rr', a), 0);

      // Draining again changes nothing.
      assert.equal((await patch(gw, 'rr', b, { drain: true })).drain, true);
      assert.deepEqual(await spread(gw, 4), { a: 4 });

      const back = await patch(gw, 'rr', b, { drain: false });
      assert.equal(back.drain, false);
      assert.equal(back.state, 'up');
      const seen = await spread(gw, 20);
      assert.ok(seen.a > 0 && seen.b > 0, JSON.stringify(seen));
      assert.ok(b.traffic() > bBefore);
      assert.equal((await targets(gw, 'rr')).get(idOf(b))?.drain, false);
      assert.equal(await drained(gw, 'rr', b), 0);
    });

    test('an attempt in flight on a target when it is drained finishes normally', async () => {
      const slow = gw.get('/slow');
      await until(() => a.held.length + b.held.length === 1, 'the slow request held upstream');
      const [busy, other] = a.held.length === 1 ? [a, b] : [b, a];
      const t = await patch(gw, 'rr', busy, { drain: true });
      assert.equal(t.drain, true);
      assert.equal(t.inflight, 1);
      assert.deepEqual(await spread(gw, 10), { [other.name]: 10 });
      busy.release();
      const done = await slow;
      assert.equal(done.status, 200);
      assert.equal(done.text, `${busy.name}-slow`);
      await until(
        async () => (await targets(gw, 'rr')).get(idOf(busy))?.inflight === 0,
        'inflight back to 0',
      );
      assert.equal((await patch(gw, 'rr', busy, { drain: false })).drain, false);
      const seen = await spread(gw, 20);
      assert.ok(seen.a > 0 && seen.b > 0, JSON.stringify(seen));
    });

    test('panic never uses a drained target; drained targets count neither for nor against panic', async () => {
      // pn: both targets fail their checks, so the pool is in panic (threshold 100) and uses both.
      await until(async () => {
        const t = await targets(gw, 'pn');
        return t.get(idOf(c))?.state === 'down' && t.get(idOf(d))?.state === 'down';
      }, 'c and d found down');
      const inPanic = await spread(gw, 20, '/pn/x');
      assert.ok(inPanic.c > 0 && inPanic.d > 0, JSON.stringify(inPanic));

      const t = await patch(gw, 'pn', c, { drain: true });
      assert.equal(t.drain, true);
      assert.equal(t.state, 'down');
      const cBefore = c.traffic();
      assert.deepEqual(await spread(gw, 20, '/pn/x'), { d: 20 });
      assert.equal(c.traffic(), cBefore);

      // p50 (threshold 50): i is drained (in the file) and healthy, j is down. Counted, i would
      // keep the pool out of panic (1 of 2 usable) and leave no target; left out, the pool is
      // in panic and j answers.
      await until(async () => (await targets(gw, 'p50')).get(idOf(j))?.state === 'down', 'j found down');
      assert.equal((await targets(gw, 'p50')).get(idOf(i))?.state, 'up');
      assert.deepEqual(await spread(gw, 10, '/p50/x'), { j: 10 });
      assert.equal(i.traffic(), 0);

      await patch(gw, 'pn', c, { drain: false });
    });

    test('every target drained: 503 NO_TARGET_AVAILABLE; enabled again, they answer', async () => {
      await patch(gw, 'pn', c, { drain: true });
      await patch(gw, 'pn', d, { drain: true });
      const [cBefore, dBefore] = [c.traffic(), d.traffic()];
      for (let n = 0; n < 4; n++) {
        const r = await gw.get('/pn/x');
        assert.equal(r.status, 503, r.text);
        assert.match(String(r.headers['content-type']), /^application\/json/);
        assert.equal(r.json<ErrorBody>().error.code, 'NO_TARGET_AVAILABLE');
      }
      assert.deepEqual([c.traffic(), d.traffic()], [cBefore, dBefore]);
      await patch(gw, 'pn', c, { drain: false });
      await patch(gw, 'pn', d, { drain: false });
      // Both are still down: panic uses them both again.
      const seen = await spread(gw, 20, '/pn/x');
      assert.ok(seen.c > 0 && seen.d > 0, JSON.stringify(seen));
    });

    test('bad PATCH bodies get 400 naming the field, unknown pools and targets 404; nothing changes', async () => {
      const listing = stripped((await gw.admin('GET', '/pools')).text);
      const cases: Array<[unknown, RegExp]> = [
        [{}, /^body: must NOT have fewer than 1 properties$/],
        [{ drain: 'yes' }, /^body\.drain: must be boolean$/],
        [{ drain: 1 }, /^body\.drain: must be boolean$/],
        [{ drain: true, color: 1 }, /^body\.color: unknown field$/],
      ];
      for (const [body, message] of cases) {
        const r = await gw.admin('PATCH', `/pools/rr/targets/${idOf(b)}`, body);
        assert.equal(r.status, 400, JSON.stringify(body));
        const err = r.json<ErrorBody>().error;
        assert.equal(err.code, 'INVALID_BODY', JSON.stringify(body));
        assert.match(err.message, message);
      }
      const notJson = await send(`${gw.adminUrl}/pools/rr/targets/${idOf(b)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: '{"drain":',
      });
      assert.equal(notJson.status, 400);
      assert.equal(notJson.json<ErrorBody>().error.code, 'INVALID_BODY');
      const added = await gw.admin('POST', '/pools/rr/targets', { url: 'http://127.0.0.1:1', drain: 'no' });
      assert.equal(added.status, 400);
      assert.match(added.json<ErrorBody>().error.message, /^body\.drain: must be boolean$/);

      for (const [path, message] of [
        ['/pools/nope/targets/127.0.0.1:1', /no pool "nope"/],
        ['/pools/rr/targets/127.0.0.1:1', /pool "rr" has no target "127\.0\.0\.1:1"/],
      ] as const) {
        const r = await gw.admin('PATCH', path, { drain: true });
        assert.equal(r.status, 404, path);
        assert.equal(r.json<ErrorBody>().error.code, 'NOT_FOUND');
        assert.match(r.json<ErrorBody>().error.message, message);
      }

      assert.equal(stripped((await gw.admin('GET', '/pools')).text), listing);
      const seen = await spread(gw, 20);
      assert.ok(seen.a > 0 && seen.b > 0, JSON.stringify(seen));
    });

    test('POST /pools/:pool/targets with drain: true adds it drained', async () => {
      const k = await named('k');
      try {
        const r = await gw.admin('POST', '/pools/rr/targets', { url: k.url, drain: true });
        assert.equal(r.status, 201, r.text);
        assert.equal(r.json<{ target: TargetView }>().target.drain, true);
        const seen = await spread(gw, 20);
        assert.equal(seen.k, undefined, JSON.stringify(seen));
        assert.equal(k.traffic(), 0);
        assert.equal(await drained(gw, 'rr', k), 1);
        const del = await gw.admin('DELETE', `/pools/rr/targets/${idOf(k)}?wait=true`);
        assert.equal(del.status, 200, del.text);
      } finally {
        await k.close();
      }
    });

    test('deliveries of a defer route skip a drained target', async () => {
      await patch(gw, 'dp', g, { drain: true });
      const n = 6;
      for (let k = 0; k < n; k++) {
        const r = await send(`${gw.url}/hooks/${k}`, {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: `job ${k}`,
        });
        assert.equal(r.status, 202, r.text);
      }
      await until(() => h.traffic() >= n, `${n} deliveries to h`, 15_000);
      assert.equal(h.traffic(), n);
      assert.equal(g.traffic(), 0);
      assert.deepEqual(
        h.requests.map((r) => r.url).sort(),
        Array.from({ length: n }, (_, k) => `/hooks/${k}`),
      );
      await patch(gw, 'dp', g, { drain: false });
    });

    test('every target of a defer pool drained: jobs wait, attempts unspent, until one is enabled', async () => {
      await patch(gw, 'dp', g, { drain: true });
      await patch(gw, 'dp', h, { drain: true });
      const before = h.traffic() + g.traffic();
      const r = await send(`${gw.url}/hooks/held`, { method: 'POST', body: 'held' });
      assert.equal(r.status, 202, r.text);
      const id = r.json<{ id: string }>().id;
      // Longer than the deliverer's idle poll (1 s): without the hold it would have claimed the
      // job and spent an attempt on NO_TARGET_AVAILABLE by now. Nothing below waits on timing.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const held = (await gw.admin('GET', `/queue/jobs/${id}`)).json<{
        job: { state: string; attempts: number };
      }>();
      assert.equal(held.job.state, 'pending');
      assert.equal(held.job.attempts, 0);
      assert.equal(h.traffic() + g.traffic(), before);
      await patch(gw, 'dp', h, { drain: false });
      await until(
        () => h.requests.find((q) => q.url === '/hooks/held'),
        'the held job delivered to h',
        15_000,
      );
      const got = h.requests.find((q) => q.url === '/hooks/held')!;
      assert.equal(got.headers['x-manifold-attempt'], '1', 'its first attempt');
      await patch(gw, 'dp', g, { drain: false });
    });

    test('a drain survives POST /config/reload', async () => {
      await patch(gw, 'rr', b, { drain: true });
      gw.write(yaml('  - { id: extra, match: { path: /extra/* }, proxy: { pool: rr } }'));
      const r = await gw.admin('POST', '/config/reload');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json<{ restart_required: string[] }>().restart_required, []);
      const bBefore = b.traffic();
      assert.deepEqual(await spread(gw, 10, '/extra/x'), { a: 10 });
      assert.deepEqual(await spread(gw, 10), { a: 10 });
      assert.equal(b.traffic(), bBefore);
      assert.equal((await targets(gw, 'rr')).get(idOf(b))?.drain, true);
      assert.equal(await drained(gw, 'rr', b), 1);
      // The file still says `drain: true` for e; the admin API enabled it, and that stays.
      assert.equal((await targets(gw, 'cf')).get(idOf(e))?.drain, false);
      const cf = await spread(gw, 20, '/cf/x');
      assert.ok(cf.e > 0 && cf.f > 0, JSON.stringify(cf));

      await patch(gw, 'rr', b, { drain: false });
      const seen = await spread(gw, 20, '/extra/x');
      assert.ok(seen.a > 0 && seen.b > 0, JSON.stringify(seen));
    });
  });
}

describe('target drain with state_file', { timeout: 60_000 }, () => {
  test('a drain survives a gateway restart', async (t) => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    const dir = mkdtempSync(join(tmpdir(), 'manifold-drain-state-'));
    let gw: ManagedGateway | null = null;
    t.after(async () => {
      await gw?.close();
      await Promise.all([a.close(), b.close()]);
      rmSync(dir, { recursive: true, force: true });
    });
    const yaml = `
log: { level: warn, access: false }
state_file: ${join(dir, 'state.json')}
pools:
  rr: { targets: [${a.url}, ${b.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: rr } }
`;
    gw = await startManaged(yaml, 0);
    await patch(gw, 'rr', b, { drain: true });
    assert.deepEqual(await spread(gw, 4), { a: 4 });
    await gw.close();
    gw = null;

    const bBefore = b.traffic();
    gw = await startManaged(yaml, 0);
    assert.equal((await targets(gw, 'rr')).get(idOf(b))?.drain, true);
    assert.deepEqual(await spread(gw, 10), { a: 10 });
    assert.equal(b.traffic(), bBefore);
    assert.equal(await drained(gw, 'rr', b), 1);

    // Enabling is kept too.
    await patch(gw, 'rr', b, { drain: false });
    await gw.close();
    gw = null;
    gw = await startManaged(yaml, 0);
    assert.equal((await targets(gw, 'rr')).get(idOf(b))?.drain, false);
    const seen = await spread(gw, 20);
    assert.ok(seen.a > 0 && seen.b > 0, JSON.stringify(seen));
  });
});
