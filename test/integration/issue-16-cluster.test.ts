/**
 * Issue 16 items 1 to 5: three real gateway processes (`--workers 0`) on one PostgreSQL
 * schema, reached through a TCP proxy the test can cut.
 *
 * - a target added, drained, enabled and removed through A's admin API changes what B and C
 *   send within a second (seen at the real targets);
 * - `GET /cluster` on any of them lists all three; C killed with SIGKILL is listed as gone,
 *   A and B serve on;
 * - the proxy stops forwarding: A and B serve with their last pool, admin writes and
 *   `GET /cluster` answer 503 CLUSTER_UNAVAILABLE; it forwards again: writes are accepted and
 *   the other instance catches up; each transition is logged once per instance;
 * - a change stored without its NOTIFY is served at the next heartbeat (the version check);
 * - item 3: `?scope=cluster` sums what the instances publish;
 * - item 4: a defer route with `rate: 20/s` on three instances delivers ~20/s in total;
 * - the schema dropped under a running gateway, and a gateway started with PostgreSQL away.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket, connect } from 'node:net';
import { describe, test } from 'node:test';
import { type Cli, cliGroup, cliPorts, scratch, spawnCli, startUpstream, until, type Upstream } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { dropSchema, newSchemaName, PG_URL, pgQuery } from '../helpers/pg.ts';
import { startManaged } from './admin-gateway.ts';

const { configFile } = scratch('manifold-cluster-');

/** A TCP proxy in front of PostgreSQL that can stop forwarding (drop every socket, refuse new). */
async function startPgProxy() {
  const pgUrl = new URL(PG_URL);
  const sockets = new Set<Socket>();
  let forwarding = true;
  const server = createServer((down) => {
    if (!forwarding) {
      down.destroy();
      return;
    }
    const up = connect(Number(pgUrl.port || 5432), pgUrl.hostname);
    sockets.add(down);
    sockets.add(up);
    const end = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
    down.pipe(up).pipe(down);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const url = new URL(PG_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    stop() {
      forwarding = false;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    resume() {
      forwarding = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A target that answers its own name. */
const namedTarget = (name: string) => startUpstream((_req, res) => res.end(name));

interface Instance {
  name: string;
  cli: Cli;
  port: number;
  admin: string;
}

function yaml(pgUrl: string, schema: string, target: string): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
workers: 0
admin: { host: 127.0.0.1, port: 0 }
log: { level: info, access: false }
cluster: { store: postgres, url: "${pgUrl}", schema: ${schema}, heartbeat: 200ms, gone_after: 2s }
pools: { default: { targets: [${target}] } }
routes:
  - match: {}
    proxy: { pool: default }
`;
}

async function startInstance(name: string, file: string, clis: Cli[], workers = 0): Promise<Instance> {
  const cli = spawnCli(['--config', file, '--workers', String(workers)]);
  clis.push(cli);
  const { port, adminPort } = await cliPorts(cli);
  return { name, cli, port, admin: `http://127.0.0.1:${adminPort}` };
}

/** Which target answered a request sent through `i`. */
async function via(i: Instance): Promise<string> {
  const r = await send(`http://127.0.0.1:${i.port}/`);
  assert.equal(r.status, 200, `${i.name}: ${r.text}`);
  return r.text;
}

/**
 * How long a change may take to show at the targets behind the other gateways. The design is
 * "within a second" (NOTIFY, then one apply), and on a quiet machine it is tens of milliseconds;
 * the bound has room for a loaded CI machine, where six round trips through each gateway can take
 * a second by themselves. It is not a performance threshold; what it checks is that the change
 * reaches the other gateways at all while they serve (the heartbeat's version check, which would
 * also heal a lost NOTIFY, is tested on its own below).
 */
const WITHIN = 3000;

/** Polls until `n` answers in a row through `i` satisfy `ok`, within `ms`. */
async function settles(i: Instance, ok: (target: string) => boolean, what: string, ms: number): Promise<void> {
  let streak = 0;
  await until(
    async () => {
      streak = ok(await via(i)) ? streak + 1 : 0;
      return streak >= 6;
    },
    `${i.name}: ${what}`,
    ms,
  );
}

function admin(i: Instance, method: string, path: string, body?: unknown) {
  return send(`${i.admin}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

describe('issue 16: several gateways, one control plane', { timeout: 120_000 }, () => {
  test('admin changes reach every instance, the registry sees a kill -9, PostgreSQL away and back', async (t) => {
    const schema = newSchemaName('cluster');
    const proxy = await startPgProxy();
    const t1: Upstream = await namedTarget('t1');
    const t2: Upstream = await namedTarget('t2');
    const clis = cliGroup(
      t,
      () => proxy.close(),
      () => Promise.all([t1.close(), t2.close()]),
      () => dropSchema(schema),
    );
    const file = configFile(yaml(proxy.url, schema, t1.url));
    // Started together: the schema is created once under the advisory lock. B runs two workers
    // (its primary holds the store and pushes changes to them over IPC).
    const [a, b, c] = await Promise.all(
      (['A', 'B', 'C'] as const).map((n) => startInstance(n, file, clis, n === 'B' ? 2 : 0)),
    );

    // ---- GET /cluster lists all three, on any of them
    for (const i of [a, b, c]) {
      const listing = await until(
        async () => {
          const r = await admin(i, 'GET', '/cluster');
          const body = r.json<{ instances: Array<{ id: string; state: string; pid: number; self: boolean }> }>();
          return r.status === 200 && body.instances.filter((x) => x.state === 'up').length === 3 ? body : null;
        },
        `${i.name} to list three instances`,
        10_000,
      );
      const pids = listing.instances.map((x) => x.pid).sort();
      assert.deepEqual(pids, [a, b, c].map((x) => x.cli.child.pid).sort());
      assert.equal(listing.instances.find((x) => x.self)?.pid, i.cli.child.pid);
    }
    for (const i of [b, c]) assert.equal(await via(i), 't1');
    await until(
      async () => /^manifold_cluster_instances 3$/m.test((await admin(a, 'GET', '/metrics')).text),
      'A to count three instances at a heartbeat',
      5000,
    );
    assert.match((await admin(a, 'GET', '/metrics')).text, /^manifold_cluster_store_up 1$/m);
    // The dashboard's data carries the same list (the page renders it as the Cluster panel).
    const live = (await admin(a, 'GET', '/dashboard/data')).json<{
      cluster: { store: { available: boolean }; instances: Array<{ state: string }> };
    }>();
    assert.equal(live.cluster.store.available, true);
    assert.deepEqual(
      live.cluster.instances.map((x) => x.state),
      ['up', 'up', 'up'],
    );

    // ---- added through A: B and C send to it within a second
    let r = await admin(a, 'POST', '/pools/default/targets', { url: t2.url, id: 't2' });
    assert.equal(r.status, 201, r.text);
    for (const i of [b, c]) {
      const before = t2.requests.length;
      await until(async () => (await via(i)) === 't2' && t2.requests.length > before, `${i.name} to use t2`, WITHIN);
    }

    // ---- t1 drained through A: B and C send only to t2
    const t1Id = `127.0.0.1:${t1.port}`;
    r = await admin(a, 'PATCH', `/pools/default/targets/${t1Id}`, { drain: true });
    assert.equal(r.status, 200, r.text);
    await Promise.all([b, c].map((i) => settles(i, (x) => x === 't2', 'only t2 after the drain', WITHIN)));

    // ---- t1 enabled, t2 removed through A: B and C send only to t1
    r = await admin(a, 'PATCH', `/pools/default/targets/${t1Id}`, { drain: false });
    assert.equal(r.status, 200, r.text);
    r = await admin(a, 'DELETE', '/pools/default/targets/t2');
    assert.ok(r.status === 200 || r.status === 202, r.text);
    await Promise.all([b, c].map((i) => settles(i, (x) => x === 't1', 'only t1 after the removal', WITHIN)));
    const pools = (await admin(b, 'GET', '/pools/default')).json<{ pool: { targets: Array<{ id: string }> } }>();
    assert.deepEqual(
      pools.pool.targets.map((x) => x.id),
      [t1Id],
    );

    // ---- a pool created and deleted through A: B and C know it within a second
    r = await admin(a, 'POST', '/pools', { name: 'extra', targets: [t2.url] });
    assert.equal(r.status, 201, r.text);
    for (const i of [b, c])
      await until(async () => (await admin(i, 'GET', '/pools/extra')).status === 200, `${i.name} to have the pool`, WITHIN);
    r = await admin(a, 'DELETE', '/pools/extra');
    assert.equal(r.status, 200, r.text);
    for (const i of [b, c])
      await until(async () => (await admin(i, 'GET', '/pools/extra')).status === 404, `${i.name} to drop the pool`, WITHIN);

    // ---- a change that comes without a notification (written straight into the table, as if
    // the NOTIFY were lost) is served at the next heartbeat's version check
    const { rows } = await pgQuery<{ overlay: { targets: Record<string, Record<string, unknown>> } }>(
      `SELECT overlay FROM "${schema}".cluster_state`,
    );
    const overlay = rows[0].overlay;
    overlay.targets.default.t2 = { url: t2.url, id: 't2' };
    await pgQuery(`UPDATE "${schema}".cluster_state SET overlay = $1::jsonb, version = version + 1`, [
      JSON.stringify(overlay),
    ]);
    for (const i of [a, b, c]) await until(async () => (await via(i)) === 't2', `${i.name} to heal`, 5000);
    // A writes on top of it (had it been behind, it would catch up and apply its change then).
    r = await admin(a, 'DELETE', '/pools/default/targets/t2');
    assert.ok(r.status === 200 || r.status === 202, r.text);
    await Promise.all([b, c].map((i) => settles(i, (x) => x === 't1', 'only t1 again', WITHIN)));

    // ---- item 3: ?scope=cluster sums what each instance publishes (no traffic now: it settles)
    type Stats = { downstream: { success: number }; instances?: number; scope?: string };
    const local = async (i: Instance) => (await admin(i, 'GET', '/stats')).json<Stats>().downstream.success;
    await until(
      async () => {
        const sum = (await admin(a, 'GET', '/stats?scope=cluster')).json<Stats>();
        const each = (await Promise.all([a, b, c].map(local))).reduce((x, y) => x + y, 0);
        return sum.scope === 'cluster' && sum.instances === 3 && each > 0 && sum.downstream.success === each;
      },
      'the cluster /stats to be the sum of the three',
      10_000,
    );
    type Detail = Array<{ id: string; requests: number }>;
    const t1Requests = async (i: Instance, q = '') =>
      (await admin(i, 'GET', `/stats/detail${q}`)).json<Detail>().find((x) => x.id === t1Id)?.requests ?? 0;
    const perInstance = await Promise.all([a, b, c].map((i) => t1Requests(i)));
    assert.equal(await t1Requests(b, '?scope=cluster'), perInstance.reduce((x, y) => x + y, 0));
    assert.ok(perInstance[1] > 0 && perInstance[2] > 0, 'B and C sent to t1');
    type Live = { scope: string; routes: Array<{ requests: number }> };
    const liveSum = (await admin(c, 'GET', '/dashboard/data?scope=cluster')).json<Live>();
    const liveEach = await Promise.all(
      [a, b, c].map(async (i) => (await admin(i, 'GET', '/dashboard/data')).json<Live>().routes[0].requests),
    );
    assert.equal(liveSum.scope, 'cluster');
    assert.equal(liveSum.routes[0].requests, liveEach.reduce((x, y) => x + y, 0));
    const bad = await admin(a, 'GET', '/stats?scope=everywhere');
    assert.equal(bad.status, 400);
    assert.match(bad.json<{ error: { message: string } }>().error.message, /scope: must be one of instance, cluster/);

    // ---- C killed with SIGKILL: listed as gone; A and B serve on
    c.cli.kill('SIGKILL');
    await c.cli.exited;
    await until(
      async () => {
        const list = (await admin(a, 'GET', '/cluster')).json<{ instances: Array<{ pid: number; state: string }> }>();
        return list.instances.find((x) => x.pid === c.cli.child.pid)?.state === 'gone';
      },
      'C to be listed as gone',
      10_000,
    );
    const states = (await admin(b, 'GET', '/cluster'))
      .json<{ instances: Array<{ pid: number; state: string }> }>()
      .instances.map((x) => [x.pid, x.state]);
    assert.deepEqual(
      new Map(states as Array<[number, string]>),
      new Map([
        [a.cli.child.pid, 'up'],
        [b.cli.child.pid, 'up'],
        [c.cli.child.pid, 'gone'],
      ]),
    );
    for (const i of [a, b]) assert.equal(await via(i), 't1');

    // ---- PostgreSQL away: serving on with the last pool, admin writes 503
    proxy.stop();
    for (const i of [a, b]) {
      const refused = await until(
        async () => {
          const res = await admin(i, 'POST', '/pools/default/targets', { url: t2.url, id: 't2' });
          return res.status === 503 ? res : null;
        },
        `${i.name} to refuse writes`,
        10_000,
      );
      const body = refused.json<{ error: { code: string; message: string } }>();
      assert.equal(body.error.code, 'CLUSTER_UNAVAILABLE');
      assert.match(body.error.message, /PostgreSQL/);
      assert.equal((await admin(i, 'GET', '/cluster')).status, 503);
      assert.match((await admin(i, 'GET', '/metrics')).text, /^manifold_cluster_store_up 0$/m);
      // Reads of this instance's own view still answer; the dashboard says the store is away.
      assert.equal((await admin(i, 'GET', '/pools')).status, 200);
      const data = await admin(i, 'GET', '/dashboard/data');
      assert.equal(data.status, 200);
      assert.equal(data.json<{ cluster: { store: { available: boolean } } }>().cluster.store.available, false);
      // Asked for the cluster's numbers, the page gets this instance's, labelled as such.
      const scoped = await admin(i, 'GET', '/dashboard/data?scope=cluster');
      assert.equal(scoped.json<{ scope: string }>().scope, 'instance');
    }
    // A few heartbeats fail meanwhile; traffic is untouched.
    const outage = Date.now();
    while (Date.now() - outage < 1000) for (const i of [a, b]) assert.equal(await via(i), 't1');
    assert.equal(
      (await admin(a, 'PATCH', `/pools/default/targets/${t1Id}`, { weight: 3 })).status,
      503,
      'a second write is refused too',
    );

    // ---- PostgreSQL back: writes accepted again, the other instance catches up
    proxy.resume();
    await until(
      async () => (await admin(a, 'POST', '/pools/default/targets', { url: t2.url, id: 't2' })).status === 201,
      'A to accept writes again',
      10_000,
    );
    await until(async () => (await via(b)) === 't2', 'B to catch up with the target added after the outage', 10_000);
    await until(async () => (await admin(b, 'GET', '/cluster')).status === 200, 'B to list the cluster again', 10_000);

    // Each transition logged once per instance, not once per failed heartbeat.
    for (const i of [a, b]) {
      const msgs = i.cli.logs().map((l) => String(l.msg));
      assert.equal(msgs.filter((m) => m.startsWith('cluster store unreachable')).length, 1, `${i.name}: ${msgs}`);
      await until(
        () => i.cli.logs().some((l) => String(l.msg).startsWith('cluster store reachable again')),
        `${i.name} to log the store's return`,
        10_000,
      );
      assert.equal(
        i.cli.logs().filter((l) => String(l.msg).startsWith('cluster store reachable again')).length,
        1,
      );
    }

    // ---- a gateway stopped cleanly leaves the registry (it is not "gone")
    b.cli.kill('SIGTERM');
    assert.equal(await b.cli.exited, 0);
    const after = (await admin(a, 'GET', '/cluster')).json<{ instances: Array<{ pid: number }> }>();
    assert.deepEqual(
      after.instances.map((x) => x.pid).sort(),
      [a.cli.child.pid, c.cli.child.pid].sort(),
    );
  });
});

describe('issue 16 item 4: cluster-wide defer limits', { timeout: 120_000 }, () => {
  test('a defer route with rate 20/s on three instances delivers about 20/s in total, not 60/s', async (t) => {
    const schema = newSchemaName('clrate');
    const times: number[] = [];
    const target = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        times.push(Date.now());
        res.end('ok');
      });
    });
    const clis = cliGroup(t, () => target.close(), () => dropSchema(schema));
    // The queue and the cluster store share the database and the schema (cluster.url defaults to queue.url).
    const file = configFile(`
listen: { host: 127.0.0.1, port: 0 }
workers: 0
admin: { host: 127.0.0.1, port: 0 }
log: { level: info, access: false }
queue: { driver: postgres, url: "${PG_URL}", schema: ${schema}, pool_size: 3 }
cluster: { store: postgres, heartbeat: 200ms, gone_after: 2s }
pools: { rx: { targets: [${target.url}] } }
routes:
  - id: hooks
    match: { path: /hooks/* }
    defer: { pool: rx, rate: 20/s, concurrency: 30 }
`);
    const instances = await Promise.all(['A', 'B', 'C'].map((n) => startInstance(n, file, clis)));
    // Each instance has counted the others at a heartbeat: its share of the limits is a third.
    for (const i of instances)
      await until(
        async () => {
          const r = await admin(i, 'GET', '/cluster');
          return r.status === 200 && r.json<{ store: { peers: number } }>().store.peers === 3;
        },
        `${i.name} to count three instances`,
        10_000,
      );
    // 480 jobs, through all three: enough to keep the deliverers busy past the window even at
    // three times the limit (which is what per-instance limits would deliver).
    for (let i = 0; i < 480; i += 24) {
      await Promise.all(
        Array.from({ length: 24 }, (_, k) =>
          send(`http://127.0.0.1:${instances[(i + k) % 3].port}/hooks/${i + k}`, { method: 'POST', body: 'x' }).then((r) =>
            assert.equal(r.status, 202, r.text),
          ),
        ),
      );
    }
    await until(() => times.length > 0, 'a first delivery', 10_000);
    // A window of several seconds that starts a second after the first delivery.
    const from = times[0] + 1000;
    const to = from + 5000;
    await until(() => Date.now() > to + 200, 'the measuring window to pass', 20_000);
    const n = times.filter((x) => x >= from && x < to).length;
    const perSecond = n / 5;
    t.diagnostic(`${perSecond}/s delivered in total`);
    // 20/s in total, with room for a busy machine; three per-instance limits would be 60/s.
    assert.ok(perSecond < 35, `${perSecond}/s delivered in total: the limit is not the cluster's`);
    assert.ok(perSecond > 8, `${perSecond}/s delivered in total: far below the limit`);
  });
});

describe('issue 16: the cluster schema', { timeout: 60_000 }, () => {
  test('dropped while a gateway runs: created again at a heartbeat, writes accepted again', async (t) => {
    const schema = newSchemaName('cldrop');
    const target = await namedTarget('t1');
    const clis = cliGroup(t, () => target.close(), () => dropSchema(schema));
    const a = await startInstance('A', configFile(yaml(PG_URL, schema, target.url)), clis);
    await until(async () => (await admin(a, 'GET', '/cluster')).status === 200, 'the registry', 10_000);
    await dropSchema(schema);
    await until(
      async () => (await admin(a, 'POST', '/pools/default/targets', { url: 'http://127.0.0.1:9', id: 'x' })).status === 201,
      'a write to be accepted on the re-created schema',
      10_000,
    );
    const { rows } = await pgQuery<{ version: string }>(`SELECT version FROM "${schema}".cluster_state`);
    assert.equal(Number(rows[0].version), 1);
    // Dropped again after a change: the version starts over, and the gateway follows the store.
    await dropSchema(schema);
    await until(
      async () => (await admin(a, 'POST', '/pools/default/targets', { url: 'http://127.0.0.1:10', id: 'y' })).status === 201,
      'a write on a store that starts over',
      10_000,
    );
    const pool = (await admin(a, 'GET', '/pools/default')).json<{ pool: { targets: Array<{ id: string }> } }>();
    assert.deepEqual(pool.pool.targets.map((x) => x.id).sort(), [`127.0.0.1:${target.port}`, 'y'].sort());
  });

  test('a gateway that starts while PostgreSQL is away serves its file, refuses writes, then joins', async (t) => {
    const schema = newSchemaName('clstart');
    const proxy = await startPgProxy();
    const target = await namedTarget('t1');
    const clis = cliGroup(t, () => proxy.close(), () => target.close(), () => dropSchema(schema));
    proxy.stop();
    const a = await startInstance('A', configFile(yaml(proxy.url, schema, target.url)), clis);
    assert.equal(await via(a), 't1');
    const refused = await admin(a, 'POST', '/pools/default/targets', { url: 'http://127.0.0.1:9', id: 'x' });
    assert.equal(refused.status, 503);
    assert.equal(refused.json<{ error: { code: string } }>().error.code, 'CLUSTER_UNAVAILABLE');
    proxy.resume();
    await until(
      async () => (await admin(a, 'POST', '/pools/default/targets', { url: 'http://127.0.0.1:9', id: 'x' })).status === 201,
      'writes accepted once PostgreSQL answers',
      10_000,
    );
    const msgs = a.cli.logs().map((l) => String(l.msg));
    assert.equal(msgs.filter((m) => m.startsWith('cluster store unreachable')).length, 1, msgs.join('\n'));
    assert.equal(msgs.filter((m) => m.startsWith('cluster store reachable again')).length, 1, msgs.join('\n'));
  });

  test("a change one gateway's file cannot take is kept in the store for the ones that can", async (t) => {
    const schema = newSchemaName('clmixed');
    const t1 = await namedTarget('t1');
    const t2 = await namedTarget('t2');
    const clis = cliGroup(t, () => Promise.all([t1.close(), t2.close()]), () => dropSchema(schema));
    const base = yaml(PG_URL, schema, t1.url);
    // B's file has a pool "bonly" (and a route to it) that A's has not.
    const withB = base.replace(
      'pools: { default: { targets: [',
      `pools: { bonly: { targets: [${t1.url}] }, default: { targets: [`,
    ).replace('routes:\n', 'routes:\n  - match: { path: /b/* }\n    proxy: { pool: bonly }\n');
    const [a, b] = await Promise.all([
      startInstance('A', configFile(base), clis),
      startInstance('B', configFile(withB), clis),
    ]);
    let r = await admin(b, 'POST', '/pools/bonly/targets', { url: t2.url, id: 't2' });
    assert.equal(r.status, 201, r.text);
    await until(
      () => a.cli.logs().some((l) => l.msg === 'cluster change entry skipped' && String(l.entry) === 'targets.bonly'),
      'A to skip the entry it cannot take',
      5000,
    );
    // A changes its own pool: the stored overlay keeps B's entry.
    r = await admin(a, 'POST', '/pools/default/targets', { url: t2.url, id: 't2' });
    assert.equal(r.status, 201, r.text);
    await until(async () => (await via(b)) === 't2', 'B to serve A\'s change', 5000);
    const bonly = (await admin(b, 'GET', '/pools/bonly')).json<{ pool: { targets: Array<{ id: string }> } }>();
    assert.deepEqual(bonly.pool.targets.map((x) => x.id).sort(), [`127.0.0.1:${t1.port}`, 't2'].sort());
    const { rows } = await pgQuery<{ overlay: { targets: Record<string, Record<string, unknown>> } }>(
      `SELECT overlay FROM "${schema}".cluster_state`,
    );
    assert.deepEqual(Object.keys(rows[0].overlay.targets).sort(), ['bonly', 'default']);
  });

  test('without cluster.store: GET /cluster is 404, scope=cluster is this gateway alone', async (t) => {
    const target = await namedTarget('t1');
    const gw = await startManaged(
      `admin: { port: 0 }\nlog: { level: info, access: false }\npools: { default: { targets: [${target.url}] } }\nroutes: [{ match: {}, proxy: { pool: default } }]\n`,
      0,
    );
    t.after(async () => {
      await gw.close();
      await target.close();
    });
    assert.equal((await gw.get('/')).text, 't1');
    const r = await gw.admin('GET', '/cluster');
    assert.equal(r.status, 404);
    assert.match(r.json<{ error: { code: string; message: string } }>().error.message, /cluster\.store is not set/);
    const stats = await until(async () => {
      const s = (await gw.admin('GET', '/stats?scope=cluster')).json<{ instances: number; downstream: { success: number } }>();
      return s.downstream.success === 1 ? s : null;
    }, 'the request counted');
    assert.equal(stats.instances, 1);
    assert.equal((await gw.admin('GET', '/dashboard/data')).json<{ cluster: unknown }>().cluster, null);
  });

  test('changes made at once through two gateways all land (a writer that was behind catches up)', async (t) => {
    const schema = newSchemaName('clrace');
    const target = await namedTarget('t1');
    const clis = cliGroup(t, () => target.close(), () => dropSchema(schema));
    const file = configFile(yaml(PG_URL, schema, target.url));
    const [a, b] = await Promise.all([startInstance('A', file, clis), startInstance('B', file, clis)]);
    const ids = Array.from({ length: 12 }, (_, k) => `x${k}`);
    const answers = await Promise.all(
      ids.map((id, k) => admin(k % 2 === 0 ? a : b, 'POST', '/pools/default/targets', { url: `http://127.0.0.1:${100 + k}`, id })),
    );
    assert.deepEqual(
      answers.map((r) => r.status),
      ids.map(() => 201),
      answers.map((r) => r.text).join('\n'),
    );
    for (const i of [a, b])
      await until(
        async () => {
          const p = (await admin(i, 'GET', '/pools/default')).json<{ pool: { targets: Array<{ id: string }> } }>();
          return ids.every((id) => p.pool.targets.some((x) => x.id === id));
        },
        `${i.name} to serve all twelve`,
        5000,
      );
    const { rows } = await pgQuery<{ n: string }>(`SELECT count(*) AS n FROM "${schema}".cluster_changes`);
    assert.equal(Number(rows[0].n), 12);
  });
});
