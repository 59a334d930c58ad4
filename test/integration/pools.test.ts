/**
 * Issue 3: pools that change at run time. Targets added and removed through the admin API
 * (with drain), weights, pools created and deleted, changes that survive a worker restart
 * and a gateway restart (state_file), and each selector's distribution over real traffic.
 * Every membership test runs in one process and with `--workers 2` (the real CLI).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { MODES, type ManagedGateway, spread, startManaged } from './admin-gateway.ts';

/** An upstream answering its name; `/slow` is held until `release()`. */
async function named(name: string) {
  const held: ServerResponse[] = [];
  const up = await startUpstream((req, res) => {
    if (req.url === '/slow') {
      held.push(res);
      return;
    }
    res.end(name);
  });
  return Object.assign(up, {
    held,
    release() {
      for (const res of held.splice(0)) res.end(`${name}-slow`);
    },
  });
}

const config = (targets: string[], extra = '') => `
log: { level: info, access: false }
pools:
  default:
    targets: [${targets.join(', ')}]
${extra}
routes:
  - { match: { path: /* }, proxy: { pool: default } }
`;

for (const mode of MODES) {
  describe(`pool membership (${mode.name})`, () => {
    let a: Awaited<ReturnType<typeof named>>;
    let b: Awaited<ReturnType<typeof named>>;
    let gw: ManagedGateway;
    before(async () => {
      [a, b] = await Promise.all([named('a'), named('b')]);
      gw = await startManaged(config([a.url]), mode.workers);
    });
    after(async () => {
      await gw.close();
      await Promise.all([a.close(), b.close()]);
    });

    test('a target added through the admin API gets traffic', async () => {
      assert.deepEqual(await spread(gw, 4), { a: 4 });
      const r = await gw.admin('POST', '/pools/default/targets', { url: b.url });
      assert.equal(r.status, 201, r.text);
      assert.equal(r.json<{ target: { id: string; state: string } }>().target.id, `127.0.0.1:${b.port}`);
      assert.equal(r.json<{ target: { state: string } }>().target.state, 'up');
      // Every worker serves the change once the call has answered.
      const seen = await spread(gw, 20);
      assert.ok(seen.a > 0 && seen.b > 0, JSON.stringify(seen));
    });

    test('a removed target stops getting new requests; its in-flight request completes', async () => {
      // Get one request held on b.
      let slow: Promise<{ status: number; text: string }> | null = null;
      await until(async () => {
        const p = gw.get('/slow');
        const first = await Promise.race([p, new Promise((r) => setTimeout(() => r(null), 100))]);
        if (first === null && b.held.length > 0) slow = p;
        a.release(); // it landed on a: let it go and try again
        return slow !== null;
      }, 'a request held on b');
      let deleted = false;
      const del = gw
        .admin('DELETE', `/pools/default/targets/127.0.0.1:${b.port}?wait=true`)
        .finally(() => (deleted = true));
      // No new request reaches b, while the old one is still running.
      await until(
        async () =>
          (await gw.admin('GET', '/pools/default')).json<{ pool: { targets: unknown[] } }>().pool.targets
            .length === 2,
        'b listed as draining',
      );
      const listed = (await gw.admin('GET', '/pools/default')).json<{
        pool: { targets: Array<{ id: string; state: string; inflight: number }> };
      }>();
      const drainingB = listed.pool.targets.find((t) => t.id === `127.0.0.1:${b.port}`)!;
      assert.equal(drainingB.state, 'draining');
      assert.equal(drainingB.inflight, 1);
      assert.deepEqual(await spread(gw, 10), { a: 10 });
      assert.equal(deleted, false, 'DELETE ?wait=true answers only once drained');
      b.release();
      const done = await slow!;
      assert.equal(done.status, 200);
      assert.equal(done.text, 'b-slow');
      const r = await del;
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json<{ drained: boolean }>().drained, true);
      await until(
        async () =>
          (await gw.admin('GET', '/pools/default')).json<{ pool: { targets: unknown[] } }>().pool.targets
            .length === 1,
        'b gone from the listing',
      );
    });

    test('the seed shorthand: POST /servers and DELETE /servers/:ip/:port on the default pool', async () => {
      const r = await gw.admin('POST', '/servers', { url: b.url });
      assert.equal(r.status, 201, r.text);
      await until(async () => (await spread(gw, 10)).b > 0, 'traffic on b');
      const d = await gw.admin('DELETE', `/servers/127.0.0.1/${b.port}`);
      assert.equal(d.status, 202, d.text);
      assert.equal(d.json<{ target: { state: string } }>().target.state, 'draining');
      assert.deepEqual(await spread(gw, 10), { a: 10 });
      assert.equal((await gw.admin('DELETE', `/servers/127.0.0.1/${b.port}`)).status, 404);
    });

    test('weights change through PATCH (weighted selector)', async () => {
      const created = await gw.admin('POST', '/pools', {
        name: 'w',
        selector: 'weighted',
        targets: [{ url: a.url }, { url: b.url }],
      });
      assert.equal(created.status, 201, created.text);
      const p = await gw.admin('PATCH', `/pools/w/targets/127.0.0.1:${b.port}`, { weight: 3 });
      assert.equal(p.status, 200, p.text);
      assert.equal(p.json<{ target: { weight: number } }>().target.weight, 3);
      // Pools are reached through routes; swap the route over by deleting `default`? No: the
      // route names `default`, so deleting it must be refused and change nothing.
      const refused = await gw.admin('DELETE', '/pools/default');
      assert.equal(refused.status, 409, refused.text);
      assert.match(refused.json<{ error: { message: string } }>().error.message, /routes\[0\]\.proxy\.pool/);
      assert.deepEqual(await spread(gw, 4), { a: 4 });
      assert.equal((await gw.admin('DELETE', '/pools/w')).status, 200);
      assert.equal((await gw.admin('GET', '/pools/w')).status, 404);
    });

    if (mode.workers > 1) {
      test('admin changes survive a worker restart', async () => {
        assert.equal((await gw.admin('POST', '/pools/default/targets', { url: b.url })).status, 201);
        const pids = () =>
          execFileSync('pgrep', ['-P', String(gw.cli.child.pid)], { encoding: 'utf8' })
            .split('\n')
            .filter(Boolean);
        const before = pids();
        assert.equal(before.length, 2);
        for (const pid of before) process.kill(Number(pid), 'SIGKILL');
        await until(
          () => {
            const now = pids();
            return now.length === 2 && now.every((p) => !before.includes(p));
          },
          'two new workers',
          15_000,
        );
        const seen = await until(
          async () => {
            try {
              const s = await spread(gw, 20);
              return s.b > 0 && s.a > 0 ? s : null;
            } catch {
              return false;
            }
          },
          'traffic on a and b from the new workers',
          15_000,
        );
        assert.equal(Object.keys(seen).length, 2, JSON.stringify(seen));
        await gw.admin('DELETE', `/pools/default/targets/127.0.0.1:${b.port}?wait=true`);
      });
    }
  });
}

describe('state_file', () => {
  test('pool membership changed through the API survives a gateway restart', async (t) => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    const stateFile = join(tmpdir(), `manifold-state-${process.pid}.json`);
    t.after(async () => {
      rmSync(stateFile, { force: true });
      await Promise.all([a.close(), b.close()]);
    });
    const yaml = `state_file: ${stateFile}\n${config([a.url])}`;
    let gw = await startManaged(yaml, 0);
    try {
      assert.equal((await gw.admin('POST', '/pools/default/targets', { url: b.url, weight: 2 })).status, 201);
      assert.equal((await gw.admin('DELETE', `/pools/default/targets/127.0.0.1:${a.port}`)).status, 202);
    } finally {
      await gw.close();
    }
    gw = await startManaged(yaml, 0);
    try {
      const pool = (await gw.admin('GET', '/pools/default')).json<{
        pool: { targets: Array<{ id: string; weight: number }> };
      }>().pool;
      assert.deepEqual(
        pool.targets.map((x) => [x.id, x.weight]),
        [[`127.0.0.1:${b.port}`, 2]],
      );
      assert.deepEqual(await spread(gw, 4), { b: 4 });
    } finally {
      await gw.close();
    }
  });
});

describe('selector distributions over real traffic (one process)', () => {
  let ups: Upstream[];
  let gw: Gateway;
  before(async () => {
    ups = await Promise.all(
      ['a', 'b', 'c'].map((name) =>
        startUpstream((req, res) => {
          // c is slow, so least-inflight should send it less while requests overlap.
          setTimeout(() => res.end(name), name === 'c' && req.url?.startsWith('/least') ? 40 : 0);
        }),
      ),
    );
    const t = ups.map((u) => u.url);
    const pool = (name: string, extra = '') => `  ${name}: { targets: [${t.join(', ')}]${extra} }`;
    gw = await startGateway(`
log: { level: warn, access: false }
pools:
${pool('rr', ', selector: round-robin')}
${pool('random', ', selector: random')}
${pool('least', ', selector: least-inflight')}
${pool('hash', ', selector: hash, hash_key: "header:x-user"')}
  weighted:
    selector: weighted
    targets: [{ url: ${t[0]}, weight: 3 }, { url: ${t[1]}, weight: 2 }, { url: ${t[2]}, weight: 1 }]
routes:
  - { match: { path: /rr }, proxy: { pool: rr } }
  - { match: { path: /random }, proxy: { pool: random } }
  - { match: { path: /least }, proxy: { pool: least } }
  - { match: { path: /hash }, proxy: { pool: hash } }
  - { match: { path: /weighted }, proxy: { pool: weighted } }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all(ups.map((u) => u.close()));
  });

  async function count(
    path: string,
    n: number,
    concurrency = 1,
    headers?: (i: number) => Record<string, string>,
  ) {
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    let i = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (i < n) {
          const k = i++;
          const r = await send(`${gw.url}${path}`, { headers: headers?.(k) });
          assert.equal(r.status, 200);
          counts[r.text]++;
        }
      }),
    );
    return counts;
  }

  test('round-robin: even', async () => {
    assert.deepEqual(await count('/rr', 300), { a: 100, b: 100, c: 100 });
  });

  test('weighted 3:2:1', async () => {
    assert.deepEqual(await count('/weighted', 300), { a: 150, b: 100, c: 50 });
  });

  test('random: every target within ±40% of an even share', async () => {
    const c = await count('/random', 300);
    for (const n of Object.values(c)) assert.ok(n > 60 && n < 140, JSON.stringify(c));
  });

  test('least-inflight: the slow target gets less while requests overlap', async () => {
    const c = await count('/least', 300, 12);
    assert.ok(c.c < c.a && c.c < c.b, JSON.stringify(c));
  });

  test('hash on a header: one user, one target; users spread over all', async () => {
    const byUser = new Map<string, Set<string>>();
    for (let i = 0; i < 240; i++) {
      const user = `user-${i % 60}`;
      const r = await send(`${gw.url}/hash`, { headers: { 'x-user': user } });
      (byUser.get(user) ?? byUser.set(user, new Set()).get(user)!).add(r.text);
    }
    for (const [user, targets] of byUser) assert.equal(targets.size, 1, `${user} went to ${[...targets]}`);
    const used = new Set([...byUser.values()].flatMap((s) => [...s]));
    assert.equal(used.size, 3);
  });
});
