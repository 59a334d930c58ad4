/**
 * Issue 6 with the real CLI: the crash test (kill -9 under a steady load of accepts, restart,
 * every acknowledged request is delivered at least once — counted at the receiver) for both
 * stores; `--workers 2` (workers accept, the primary delivers) with the admin queue API; and
 * the `--defer-to` quick mode.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { type Cli, cliPort, cliPorts, scratch, spawnCli, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { type Reply, send } from '../helpers/http.ts';
import { dropSchema, newSchemaName, PG_URL } from '../helpers/pg.ts';

const { dir, path: scratchFile, configFile } = scratch('manifold-defer-cli-');

/** A receiver that counts deliveries by job id and answers through a swappable function. */
async function startReceiver() {
  const seen = new Map<string, number>();
  const paths: string[] = [];
  let status = (_url: string) => 200;
  const up: Upstream = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      const id = String(req.headers['x-manifold-job-id']);
      seen.set(id, (seen.get(id) ?? 0) + 1);
      paths.push(`${req.headers.host} ${req.url}`);
      res.statusCode = status(req.url ?? '');
      res.end();
    });
  });
  return {
    up,
    seen,
    paths,
    answer(fn: (url: string) => number) {
      status = fn;
    },
  };
}

/** One POST; resolves with the job id of a 202, or null on anything else (a refused connection…). */
function accept(agent: Agent, port: number, path: string): Promise<string | null> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path, method: 'POST', agent, headers: { 'content-type': 'text/plain' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 202) return resolve(null);
          resolve(JSON.parse(Buffer.concat(chunks).toString()).id as string);
        });
        res.on('error', () => resolve(null));
      },
    );
    req.on('error', () => resolve(null));
    req.end(`payload ${path}`);
  });
}

function stop(cli: Cli): Promise<number | null> {
  cli.kill('SIGKILL');
  return cli.exited;
}

const STORES = [
  {
    name: 'sqlite',
    queue: () => ({ yaml: `{ driver: sqlite, path: ${scratchFile('db')} }`, drop: async () => {} }),
  },
  {
    name: 'postgres',
    queue: () => {
      const schema = newSchemaName('crash');
      return {
        yaml: `{ driver: postgres, url: "${PG_URL}", schema: ${schema} }`,
        drop: () => dropSchema(schema),
      };
    },
  },
];

describe('defer: crash safety (kill -9)', { timeout: 120_000 }, () => {
  for (const store of STORES) {
    test(`every request that got a 202 is delivered after kill -9 and a restart (${store.name})`, async (t) => {
      const rx = await startReceiver();
      const queue = store.queue();
      t.after(async () => {
        await rx.up.close();
        await queue.drop();
      });
      // A delivery rate below the accept rate keeps a backlog in the store when the process dies;
      // a short lease lets the restarted gateway take back the deliveries that were in flight.
      const file = configFile(`
listen: { host: 127.0.0.1, port: 0 }
workers: 0
admin: { enabled: false }
log: { level: info, access: false }
pools: { rx: { targets: [${rx.up.url}] } }
queue: ${queue.yaml}
routes:
  - id: hooks
    match: { path: /hooks/* }
    timeout: 1s
    defer: { pool: rx, rate: 100/s, lease: 2s, backoff: { base: 50ms, max: 200ms } }
`);
      let cli = spawnCli(['--config', file]);
      t.after(() => cli.kill('SIGKILL'));
      const port = await cliPort(cli);

      // Steady load: 8 clients posting back to back until the process is gone.
      const acked: string[] = [];
      let sending = true;
      let n = 0;
      const agent = new Agent({ keepAlive: true, maxSockets: 8 });
      t.after(() => agent.destroy());
      const clients = Array.from({ length: 8 }, async () => {
        while (sending) {
          const id = await accept(agent, port, `/hooks/${n++}`);
          if (id !== null) acked.push(id);
          else if (cli.child.exitCode !== null || cli.child.signalCode !== null) return;
        }
      });
      const loadStart = performance.now();
      await until(() => acked.length >= 300, '300 acknowledged requests', 30_000);
      t.diagnostic(`300 acks in ${Math.round(performance.now() - loadStart)} ms`);
      const killedAt = acked.length;
      assert.equal(await stop(cli), null, 'killed by a signal');
      sending = false;
      await Promise.all(clients);
      const deliveredBefore = acked.filter((id) => rx.seen.has(id)).length;
      t.diagnostic(
        `acknowledged ${acked.length} (${killedAt} when killed), ${deliveredBefore} delivered before the kill`,
      );
      assert.ok(deliveredBefore < acked.length, 'a backlog was left in the store');

      cli = spawnCli(['--config', file]);
      await cliPort(cli);
      await until(
        () => acked.every((id) => rx.seen.has(id)),
        `every acknowledged request delivered (${acked.filter((id) => !rx.seen.has(id)).length} missing)`,
        60_000,
      );
      cli.kill('SIGTERM');
      assert.equal(await cli.exited, 0);
    });
  }
});

/** Start the CLI with the admin API on port 0; returns the data and admin base URLs. */
async function startManaged(args: string[], env: NodeJS.ProcessEnv = {}) {
  const cli = spawnCli(args, { MANIFOLD_ADMIN__PORT: '0', ...env });
  const { port, adminPort } = await cliPorts(cli);
  return { cli, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
}

describe('defer: --workers 2 and the admin queue API', { timeout: 60_000 }, () => {
  test('workers accept, the primary delivers; depth, dead letters, inspect, retry and delete over the admin API', async (t) => {
    const rx = await startReceiver();
    let healthy = false;
    rx.answer((url) => (url.startsWith('/hooks/fail') && !healthy ? 500 : 200));
    t.after(() => rx.up.close());
    const file = configFile(`
listen: { host: 127.0.0.1, port: 0 }
admin: { token: secret }
log: { level: info, access: false }
pools: { rx: { targets: [${rx.up.url}] } }
queue: { path: ${join(dir, 'cluster.db')} }
routes:
  - id: hooks
    match: { path: /hooks/* }
    defer: { pool: rx, max_attempts: 2, backoff: { base: 10ms, max: 10ms } }
`);
    const gw = await startManaged(['--config', file, '--workers', '2']);
    t.after(() => gw.cli.kill('SIGKILL'));
    const admin = (method: string, path: string): Promise<Reply> =>
      send(`${gw.adminUrl}${path}`, { method, headers: { authorization: 'Bearer secret' } });

    const ok = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        send(`${gw.url}/hooks/ok/${i}`, { method: 'POST', body: `{"i":${i}}` }),
      ),
    );
    const okIds = ok.map((r) => r.json<{ id: string }>().id);
    assert.deepEqual(
      ok.map((r) => r.status),
      Array(6).fill(202),
    );
    const failId = (await send(`${gw.url}/hooks/fail`, { method: 'POST', body: 'boom' })).json<{
      id: string;
    }>().id;
    await until(() => okIds.every((id) => rx.seen.get(id) === 1), 'the good jobs delivered by the primary');
    // Workers open the store to accept; only the primary delivers.
    const opens = gw.cli.logs().filter((l) => l.msg === 'queue open');
    assert.equal(opens.filter((l) => l.deliver === true).length, 1, 'one delivering process');
    assert.ok(opens.filter((l) => l.deliver === false).length >= 1, 'workers accept');

    assert.equal((await send(`${gw.adminUrl}/queue`)).status, 401, 'the admin token is required');
    const depth = await until(async () => {
      const r = (await admin('GET', '/queue')).json<{ routes: Array<Record<string, unknown>> }>();
      return r.routes[0]?.dead === 1 && r.routes[0].done === 6 ? r : null;
    }, 'one dead letter in the depth');
    assert.deepEqual(depth.routes, [{ route: 'hooks', pending: 0, inflight: 0, done: 6, dead: 1 }]);

    const dead = (await admin('GET', '/queue/dead?route=hooks')).json<{
      jobs: Array<{ id: string }>;
      next: null;
    }>();
    assert.deepEqual(
      dead.jobs.map((j) => j.id),
      [failId],
    );
    const job = (await admin('GET', `/queue/jobs/${failId}`)).json<{ job: Record<string, unknown> }>().job;
    assert.equal(job.state, 'dead');
    assert.equal(job.attempts, 2);
    assert.equal(job.url, '/hooks/fail');
    assert.equal(Buffer.from(String(job.body), 'base64').toString(), 'boom');
    assert.match(String(job.last_error), /answered 500/);
    assert.equal(typeof job.claimed_by, 'string', 'the delivering process named itself in its claims (issue 16)');
    const page = (await admin('GET', '/queue/jobs?state=done&limit=4')).json<{
      jobs: unknown[];
      next: string;
    }>();
    assert.equal(page.jobs.length, 4);
    const rest = (await admin('GET', `/queue/jobs?state=done&limit=4&after=${page.next}`)).json<{
      jobs: unknown[];
    }>();
    assert.equal(rest.jobs.length, 2);
    assert.equal((await admin('GET', '/queue/jobs?state=nope')).status, 400);

    // Retry one: refused while not dead, delivered once the receiver is healthy.
    assert.equal((await admin('POST', `/queue/dead/${okIds[0]}/retry`)).status, 409);
    healthy = true;
    const retried = await admin('POST', `/queue/dead/${failId}/retry`);
    assert.equal(retried.status, 200);
    await until(() => rx.seen.get(failId) === 3, 'the retried dead letter delivered');

    // Retry all, then delete.
    healthy = false;
    const second = (await send(`${gw.url}/hooks/fail/2`, { method: 'POST' })).json<{ id: string }>().id;
    await until(
      async () =>
        (await admin('GET', '/queue')).json<{ routes: Array<{ dead: number }> }>().routes[0].dead === 1,
    );
    healthy = true;
    assert.deepEqual((await admin('POST', '/queue/dead/retry?route=hooks')).json(), { retried: 1 });
    await until(() => rx.seen.get(second) === 3, 'retry-all delivered it');
    assert.deepEqual((await admin('DELETE', `/queue/jobs/${second}`)).json(), { deleted: second });
    assert.equal((await admin('DELETE', `/queue/jobs/${second}`)).status, 404);
    assert.equal((await admin('GET', `/queue/jobs/${second}`)).status, 404);

    gw.cli.kill('SIGTERM');
    assert.equal(await gw.cli.exited, 0);
  });
});

describe('defer: quick mode', { timeout: 60_000 }, () => {
  test('--defer-to URL answers every request and delivers it to URL with the same path; env tunes it', async (t) => {
    const rx = await startReceiver();
    t.after(() => rx.up.close());
    const cli = spawnCli(['--defer-to', `${rx.up.url}/base`, '--host', '127.0.0.1', '--port', '0'], {
      MANIFOLD_QUEUE__PATH: join(dir, 'quick.db'),
      MANIFOLD_ROUTES__0__DEFER__STATUS: '200', // asyncproxy's SERVER_RESPONSE_STATUS
    });
    t.after(() => cli.kill('SIGKILL'));
    const port = await cliPort(cli);
    const res = await send(`http://127.0.0.1:${port}/some/endpoint?a=1`, { method: 'POST', body: 'x' });
    assert.equal(res.status, 200);
    const { id } = res.json<{ id: string }>();
    await until(() => rx.seen.get(id) === 1, 'delivered');
    assert.deepEqual(rx.paths, [`127.0.0.1:${rx.up.port} /base/some/endpoint?a=1`]);
    const bad = spawnCli(['--defer-to', 'http://x', '--config', 'y.yaml']);
    assert.equal(await bad.exited, 2);
    assert.match(bad.stderr, /--defer-to \(quick mode\) excludes --config/);
    cli.kill('SIGTERM');
    assert.equal(await cli.exited, 0);
  });
});
