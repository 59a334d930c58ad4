/**
 * Issue 16 item 6: leases that heal fast, with real gateway processes (`--workers 0`), a real
 * target and both stores.
 *
 * - kill -9 with a job in flight (the target holds it), restart on the same SQLite file: the
 *   restarted gateway (same host and port: the same claimer name) releases its previous life's
 *   claim at start and delivers the job again at once — under a 60 s lease that the test's
 *   time limit is far below, so waiting for the lease cannot pass it.
 * - two gateways on one PostgreSQL schema, a 2 s lease: kill -9 the one that claimed the job,
 *   the other delivers it once the (no longer renewed) lease runs out.
 * - renewal: a target answering after 3 leases, with a second gateway claiming on the same
 *   store, gets the job once (both stores); a renewal that finds the job claimed by another
 *   instance stops caring: its outcome is not recorded.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, test } from 'node:test';
import { type Cli, cliGroup, cliPort, freePort, scratch, spawnCli, startGateway, startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { dropSchema, newSchemaName, PG_URL, pgQuery } from '../helpers/pg.ts';

const { dir, path: scratchFile, configFile } = scratch('manifold-leases-');

interface Delivery {
  job: string;
  attempt: string;
  res: ServerResponse;
}

/** A target that records every delivery and answers each through `answer` (default: hold it). */
async function startTarget() {
  const deliveries: Delivery[] = [];
  let answer = (_d: Delivery) => {};
  const up = await startUpstream((req: IncomingMessage, res) => {
    req.resume();
    req.on('end', () => {
      const d = {
        job: String(req.headers['x-manifold-job-id']),
        attempt: String(req.headers['x-manifold-attempt']),
        res,
      };
      deliveries.push(d);
      answer(d);
    });
  });
  return {
    up,
    deliveries,
    answerWith(fn: (d: Delivery) => void) {
      answer = fn;
    },
  };
}

function gatewayYaml(port: number, targetUrl: string, queue: string, lease: string): string {
  return `
listen: { host: 127.0.0.1, port: ${port} }
admin: { enabled: false }
log: { level: info, access: false }
pools: { rx: { targets: [${targetUrl}] } }
queue: ${queue}
routes:
  - id: hooks
    match: { path: /hooks/* }
    timeout: 0
    defer: { pool: rx, lease: ${lease}, backoff: { base: 50ms, max: 200ms } }
`;
}

async function start(file: string, clis: Cli[]): Promise<{ cli: Cli; port: number }> {
  const cli = spawnCli(['--config', file, '--workers', '0']);
  clis.push(cli);
  return { cli, port: await cliPort(cli) };
}

async function post(port: number, path: string): Promise<string> {
  const reply = await send(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: 'payload',
  });
  assert.equal(reply.status, 202, reply.text);
  return reply.json<{ id: string }>().id;
}

function killed(cli: Cli): Promise<number | null> {
  cli.kill('SIGKILL');
  return cli.exited;
}

const STORES = [
  {
    name: 'sqlite',
    open() {
      const path = scratchFile('db');
      return {
        yaml: `{ driver: sqlite, path: ${path} }`,
        async state(id: string): Promise<string | undefined> {
          const db = new DatabaseSync(path, { readOnly: true });
          try {
            return (db.prepare('SELECT state FROM defer_jobs WHERE id = ?').get(id) as { state: string } | undefined)
              ?.state;
          } finally {
            db.close();
          }
        },
        drop: async () => {},
      };
    },
  },
  {
    name: 'postgres',
    open() {
      const schema = newSchemaName('leases');
      return {
        yaml: `{ driver: postgres, url: "${PG_URL}", schema: ${schema}, pool_size: 2 }`,
        async state(id: string): Promise<string | undefined> {
          const { rows } = await pgQuery<{ state: string }>(`SELECT state FROM "${schema}".jobs WHERE id = $1`, [id]);
          return rows[0]?.state;
        },
        drop: () => dropSchema(schema),
      };
    },
  },
];

describe('issue 16 item 6: leases that heal fast', { timeout: 120_000 }, () => {
  test('kill -9 with a job in flight, restart on the same SQLite file: delivered again at once, not after the 60s lease', async (t) => {
    const target = await startTarget();
    const clis = cliGroup(t, () => target.up.close());
    const port = await freePort();
    // No queue.instance: the name is <hostname>:<port>, the same after the restart.
    const file = configFile(gatewayYaml(port, target.up.url, `{ driver: sqlite, path: ${join(dir, 'kill.db')} }`, '60s'));
    const first = await start(file, clis);
    const id = await post(first.port, '/hooks/a');
    await until(() => target.deliveries.length === 1, 'the first delivery to reach the target');
    assert.deepEqual(
      target.deliveries.map((d) => [d.job, d.attempt]),
      [[id, '1']],
    );
    assert.equal(await killed(first.cli), null, 'killed by a signal');

    target.answerWith((d) => d.res.end('ok'));
    const restarted = await start(file, clis);
    assert.equal(restarted.port, port);
    // The lease is 60 s; this waits 20 s at most: only the release at start can deliver it.
    await until(() => target.deliveries.length === 2, 'the job delivered again after the restart', 20_000);
    assert.deepEqual(target.deliveries[1].job, id);
    assert.equal(target.deliveries[1].attempt, '1', 'the killed attempt was given back, not counted');
    const released = restarted.cli.logs().find((l) => l.msg === 'released the jobs left in flight by this instance before its restart');
    assert.equal(released?.jobs, 1);
    assert.match(String(released?.instance), new RegExp(`:${port}$`));
    restarted.cli.kill('SIGTERM');
    assert.equal(await restarted.cli.exited, 0);
    assert.equal(target.deliveries.length, 2);
  });

  test('PostgreSQL: kill -9 the gateway that claimed a job, the other delivers it after one 2s lease', async (t) => {
    const target = await startTarget();
    const schema = newSchemaName('leases');
    const clis = cliGroup(t, () => target.up.close(), () => dropSchema(schema));
    const queue = `{ driver: postgres, url: "${PG_URL}", schema: ${schema}, pool_size: 2 }`;
    const file = configFile(gatewayYaml(0, target.up.url, queue, '2s'));
    const a = await start(file, clis);
    const b = await start(file, clis);
    const id = await post(a.port, '/hooks/pg');
    await until(() => target.deliveries.length === 1, 'the first delivery to reach the target');

    // Which gateway claimed it: the claimer name each logged when it opened the queue.
    const row = async () =>
      (
        await pgQuery<{ claimed_by: string; lease_until: string }>(
          `SELECT claimed_by, lease_until FROM "${schema}".jobs WHERE id = $1`,
          [id],
        )
      ).rows;
    const rows = await row();
    const nameOf = (cli: Cli) => (cli.logs().find((l) => l.msg === 'queue open') as { instance: string }).instance;
    const owner = [a, b].find((g) => nameOf(g.cli) === rows[0].claimed_by);
    assert.ok(owner !== undefined, `the job is claimed by one of the two gateways (${rows[0].claimed_by})`);
    const survivor = owner === a ? b : a;
    // The 2 s lease is renewed while the target holds the delivery (the heartbeat moves it on).
    const firstLease = Number(rows[0].lease_until);
    await until(async () => Number((await row())[0].lease_until) > firstLease, 'the lease to be renewed');
    assert.equal(target.deliveries.length, 1);

    target.answerWith((d) => d.res.end('ok'));
    assert.equal(await killed(owner.cli), null, 'killed by a signal');
    await until(() => target.deliveries.length === 2, 'the other gateway to deliver the job', 20_000);
    assert.equal(target.deliveries[1].job, id);
    assert.equal(target.deliveries[1].attempt, '2', 'taken over after the lease ran out: a second attempt');
    await until(async () => (await pgQuery(`SELECT 1 FROM "${schema}".jobs WHERE id = $1 AND state = 'done'`, [id])).rowCount === 1, 'the job done');
    const { rows: done } = await pgQuery<{ claimed_by: string }>(`SELECT claimed_by FROM "${schema}".jobs WHERE id = $1`, [id]);
    assert.equal(done[0].claimed_by, nameOf(survivor.cli));
  });

  for (const store of STORES) {
    test(`renewal: a delivery taking 3 leases is delivered once, with another gateway claiming (${store.name})`, async (t) => {
      const target = await startTarget();
      const queue = store.open();
      const clis = cliGroup(t, () => target.up.close(), () => queue.drop());
      const leaseMs = 1000;
      const answered: string[] = [];
      target.answerWith((d) => {
        setTimeout(() => {
          d.res.end('ok');
          answered.push(d.job);
        }, 3 * leaseMs);
      });
      const file = configFile(gatewayYaml(0, target.up.url, queue.yaml, `${leaseMs}ms`));
      const a = await start(file, clis);
      await start(file, clis);
      const id = await post(a.port, '/hooks/slow');
      await until(async () => (await queue.state(id)) === 'done', 'the slow delivery completed', 30_000);
      assert.deepEqual(
        target.deliveries.map((d) => [d.job, d.attempt]),
        [[id, '1']],
        'one delivery: its lease was renewed while the target took three leases to answer',
      );
      assert.deepEqual(answered, [id]);
    });
  }

  test('a renewal that finds the job claimed by another instance stops caring: its outcome is not recorded', async (t) => {
    const target = await startTarget();
    const path = scratchFile('db');
    const gw = await startGateway(gatewayYaml(0, target.up.url, `{ driver: sqlite, path: ${path} }`, '1s'));
    t.after(async () => {
      await gw.close();
      await target.up.close();
    });
    const id = await post(gw.port, '/hooks/taken');
    await until(() => target.deliveries.length === 1, 'the delivery to reach the target');
    // What another instance does when our lease ran out (a stall): claim it, with its own lease.
    const db = new DatabaseSync(path);
    t.after(() => db.close());
    const later = Date.now() + 3_600_000;
    db.prepare(`UPDATE defer_jobs SET claimed_by = 'someone-else', lease_until = ? WHERE id = ?`).run(later, id);
    await until(
      () => gw.logs.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('lease lost') && l.job === id),
      'the next renewal to find the job no longer ours',
    );
    target.deliveries[0].res.end('ok');
    await until(() => gw.runtime.defer.inflight().hooks === 0, 'the delivery to end');
    const row = db.prepare('SELECT state, claimed_by, lease_until FROM defer_jobs WHERE id = ?').get(id);
    assert.deepEqual({ ...row }, { state: 'inflight', claimed_by: 'someone-else', lease_until: later }, 'left to its claimer');
    assert.equal(target.deliveries.length, 1);
  });
});
