/**
 * Issue 13 items 2 and 3, with the real CLI and the test PostgreSQL: Manifold started with
 * asyncproxy's own config.yaml (ports, remote and database replaced) and with only its
 * environment variables (libpq connection string), answering `response_status` with an empty
 * body, delivering with path and query, `enqueue_rate` direct-then-queued, `enqueue_enabled:
 * false`, retries then a dead letter, the metrics port; and `manifold queue import --from
 * asyncproxy` moving a `proxy_requests` table built by asyncproxy's migrations, each row
 * delivered once, also after an import stopped half way.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type AsyncproxyRow, rowToJob } from '../../src/defer/import.ts';
import { SqliteQueue } from '../../src/defer/sqlite-queue.ts';
import { type Cli, cliPort, NODE, ROOT, spawnCli, startUpstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { freshSchema, pgQuery } from '../helpers/pg.ts';

const dir = mkdtempSync(join(tmpdir(), 'manifold-asyncproxy-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;

/** The test database in libpq form, with the lib/pq key asyncproxy's own file has. */
const LIBPQ = 'host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable binary_parameters=yes';

/** asyncproxy's config.yaml as its repository has it, with the addresses replaced. */
function seedConfig(remote: string): string {
  const file = join(dir, `config-${++seq}.yaml`);
  writeFileSync(
    file,
    `server:
  bind: 127.0.0.1:0
  response_status: 200
  shutdown_timeout: 30s
  enqueue_enabled: true
  enqueue_rate: 30
metrics:
  bind: 127.0.0.1:0
  path: /metrics
proxy:
  remote_url: ${remote}
  request_timeout: 120s
  num_clients: 700
queue:
  workers: 120
  handle_per_second: 30
  max_retries: 1000
db:
  connection_string: '${LIBPQ}'
  max_connections: 2
  use_index: true
`,
  );
  return file;
}

interface Seen {
  method: string;
  url: string;
  attempt: string;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** A remote that records what it is sent and answers through a swappable function. */
async function startRemote() {
  const seen: Seen[] = [];
  let status = (_url: string) => 200;
  const up = await startUpstream((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        attempt: String(req.headers['x-manifold-attempt']),
        body: Buffer.concat(chunks).toString(),
        headers: req.headers,
      });
      res.statusCode = status(req.url ?? '');
      res.end('remote body');
    });
  });
  return {
    up,
    seen,
    answer(fn: (url: string) => number) {
      status = fn;
    },
    to: (url: string) => seen.filter((s) => s.url === url),
  };
}

async function start(t: { after: (fn: () => unknown) => void }, args: string[], env: NodeJS.ProcessEnv) {
  const cli = spawnCli(args, env);
  t.after(() => cli.kill('SIGKILL'));
  let port: number;
  try {
    port = await cliPort(cli);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nstderr: ${cli.stderr}\nstdout: ${cli.stdout.slice(-2000)}`, { cause: err });
  }
  const metrics = await until(() => cli.logs().find((l) => l.msg === 'metrics listening'), 'metrics port');
  return { cli, url: `http://127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metrics.port as number}` };
}

async function stopped(cli: Cli): Promise<number | null> {
  cli.kill('SIGTERM');
  return cli.exited;
}

describe('asyncproxy config.yaml and environment', { timeout: 60_000 }, () => {
  test("its own config.yaml: response_status with an empty body, path and query kept, enqueue_rate direct then queued, metrics on metrics.bind", async (t) => {
    const remote = await startRemote();
    t.after(() => remote.up.close());
    const schema = freshSchema(t, 'ap_file');
    // The file is the seed's; only the rate comes from its env override, to keep the burst small.
    const gw = await start(t, ['--config', seedConfig(`${remote.up.url}/ignored/path`)], {
      MANIFOLD_QUEUE__SCHEMA: schema,
      SERVER_ENQUEUE_RATE: '5',
    });
    assert.ok(gw.cli.logs().some((l) => l.msg === 'manifold listening' && String(l.config).endsWith('(asyncproxy)')));

    const first = await send(`${gw.url}/hooks/a?x=1&y=two`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-custom': 'kept' },
      body: '{"n":1}',
    });
    assert.equal(first.status, 200);
    assert.equal(first.text, '', 'asyncproxy answers with no body');
    assert.equal(first.headers['content-length'], '0');
    // Under the rate: delivered directly before the answer, to the remote's host with the path and query.
    const direct = remote.to('/hooks/a?x=1&y=two');
    assert.equal(direct.length, 1);
    assert.equal(direct[0].attempt, '0');
    assert.equal(direct[0].method, 'POST');
    assert.equal(direct[0].body, '{"n":1}');
    assert.equal(direct[0].headers['x-custom'], 'kept');
    assert.equal(direct[0].headers.host, `127.0.0.1:${remote.up.port}`);

    // A burst over the rate (burst = one second of it, 5): the excess is queued, then delivered.
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => send(`${gw.url}/burst/${i}`, { method: 'POST', body: `b${i}` })),
    );
    assert.ok(replies.every((r) => r.status === 200 && r.text === ''));
    await until(() => Array.from({ length: 20 }, (_, i) => remote.to(`/burst/${i}`).length === 1).every(Boolean), 'every burst request delivered', 20_000);
    const attempts = Array.from({ length: 20 }, (_, i) => remote.to(`/burst/${i}`)[0].attempt);
    const directCount = attempts.filter((a) => a === '0').length;
    t.diagnostic(`direct ${directCount} of 20`);
    assert.ok(directCount >= 4 && directCount < 20, `some direct (the burst), the rest queued: ${attempts.join(',')}`);
    assert.ok(attempts.includes('1'), 'queued deliveries are attempt 1');

    // The last completions commit a moment after the remote answered: poll for an empty queue.
    const metrics = await until(async () => {
      const r = await send(`${gw.metricsUrl}/metrics`);
      return /^queue_total_size 0$/m.test(r.text) ? r : null;
    }, 'queue_total_size 0');
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^http_requests_total\{path="asyncproxy"\} 21$/m);
    assert.match(metrics.text, /^http_response_time_seconds_count\{path="asyncproxy"\} 21$/m);
    assert.match(metrics.text, /^http_proxy_response_time_seconds_count\{path="asyncproxy",status="_all"\} \d+$/m);
    assert.match(metrics.text, /^queue_total_size 0$/m);
    assert.match(metrics.text, /^manifold_downstream_requests_total\{route="asyncproxy",method="POST",status_class="2xx"\} 21$/m);
    assert.equal((await send(`${gw.metricsUrl}/other`)).status, 404);
    assert.equal(await stopped(gw.cli), 0);
  });

  test('only env variables (--asyncproxy, libpq DB_CONNECTION_STRING): enqueue_rate 0 always queues; max_retries then a dead letter', async (t) => {
    const remote = await startRemote();
    remote.answer((url) => (url.startsWith('/fail') ? 500 : 200));
    t.after(() => remote.up.close());
    const schema = freshSchema(t, 'ap_env');
    const gw = await start(t, ['--asyncproxy'], {
      PROXY_REMOTE_URL: remote.up.url,
      DB_CONNECTION_STRING: LIBPQ,
      SERVER_BIND: '127.0.0.1:0',
      METRICS_BIND: '127.0.0.1:0',
      METRICS_PATH: '/prom',
      SERVER_RESPONSE_STATUS: '202',
      SERVER_ENQUEUE_RATE: '0',
      QUEUE_MAX_RETRIES: '2',
      MANIFOLD_QUEUE__SCHEMA: schema,
    });
    const ok = await send(`${gw.url}/v1/items?page=2`, { method: 'PUT', body: 'item' });
    assert.equal(ok.status, 202);
    assert.equal(ok.text, '');
    const delivered = await until(() => remote.to('/v1/items?page=2')[0], 'queued request delivered');
    assert.equal(delivered.attempt, '1', 'enqueue_rate 0: stored first, never direct');
    assert.equal(delivered.method, 'PUT');
    assert.equal(delivered.body, 'item');

    const failing = await send(`${gw.url}/fail/1`, { method: 'POST', body: 'x' });
    assert.equal(failing.status, 202);
    // max_retries 2: the first try and 2 retries, then a dead letter (asyncproxy drops it).
    await until(() => gw.cli.logs().some((l) => l.msg === 'job dead-lettered'), 'dead letter', 20_000);
    assert.deepEqual(
      remote.to('/fail/1').map((s) => s.attempt),
      ['1', '2', '3'],
    );
    const { rows } = await pgQuery(`SELECT state, attempts FROM "${schema}".jobs WHERE url = '/fail/1'`);
    assert.deepEqual(rows, [{ state: 'dead', attempts: 3 }]);
    const metrics = await send(`${gw.metricsUrl}/prom`);
    assert.match(metrics.text, /^http_requests_total\{path="asyncproxy"\} 2$/m);
    assert.match(metrics.text, /^manifold_queue_dead_letters_total\{route="asyncproxy"\} 1$/m);
    assert.equal(await stopped(gw.cli), 0);
  });

  test('enqueue_enabled false: every request is delivered before it is answered', async (t) => {
    const remote = await startRemote();
    t.after(() => remote.up.close());
    const schema = freshSchema(t, 'ap_sync');
    const gw = await start(t, ['--config', seedConfig(remote.up.url)], {
      MANIFOLD_QUEUE__SCHEMA: schema,
      SERVER_ENQUEUE_ENABLED: 'false',
    });
    // Far over enqueue_rate (30/s, burst 30), and still every one direct.
    for (let i = 0; i < 40; i++) {
      const r = await send(`${gw.url}/sync/${i}?q=${i}`, { method: 'POST', body: `s${i}` });
      assert.equal(r.status, 200);
      assert.equal(r.text, '');
      const seen = remote.to(`/sync/${i}?q=${i}`);
      assert.equal(seen.length, 1, `request ${i} reached the remote before its answer`);
      assert.equal(seen[0].attempt, '0');
    }
    const { rows } = await pgQuery(`SELECT count(*)::int AS n FROM "${schema}".jobs`);
    assert.equal(rows[0].n, 0, 'nothing was stored');
    assert.equal(await stopped(gw.cli), 0);
  });

  test('found as ./config.yaml by its keys when no config is named; its own unknown keys are refused', async () => {
    const cwd = mkdtempSync(join(dir, 'cwd-'));
    writeFileSync(join(cwd, 'config.yaml'), readFileSync(seedConfig('http://127.0.0.1:9')));
    const run = (args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const env = { ...process.env };
        delete env.MANIFOLD_CONFIG;
        const child = spawn(NODE, [join(ROOT, 'src/main.ts'), ...args], { cwd, env });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c: Buffer) => (stdout += c));
        child.stderr.on('data', (c: Buffer) => (stderr += c));
        child.on('exit', (code) => resolve({ code, stdout, stderr }));
      });
    const ok = await run(['validate']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, 'config.yaml (asyncproxy): ok (1 routes, 1 pools)\n');
    writeFileSync(join(cwd, 'config.yaml'), 'server:\n  bind: :8080\n  colour: blue\nredis: {}\n');
    const bad = await run(['validate']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /config\.yaml: server\.colour: unknown key \(not an asyncproxy setting\)/);
    assert.match(bad.stderr, /config\.yaml: redis: unknown key/);
  });

  test('config errors name the asyncproxy key and where it came from', async () => {
    const cli = spawnCli(['validate', '--config', seedConfig('ftp://x')], {
      QUEUE_WORKERS: 'many',
      DB_CONNECTION_STRING: 'host=127.0.0.1 dbname=test target_session_attrs=any',
    });
    assert.equal(await cli.exited, 1);
    assert.match(cli.stderr, /env QUEUE_WORKERS: queue\.workers: must be an integer/);
    const cli2 = spawnCli(['validate', '--config', seedConfig('ftp://x')], {
      DB_CONNECTION_STRING: 'host=127.0.0.1 dbname=test target_session_attrs=any',
    });
    assert.equal(await cli2.exited, 1);
    assert.match(cli2.stderr, /proxy\.remote_url: must start with http/);
    const cli3 = spawnCli(['validate', '--asyncproxy'], {
      DB_CONNECTION_STRING: 'host=127.0.0.1 dbname=test target_session_attrs=any',
    });
    assert.equal(await cli3.exited, 1);
    assert.match(cli3.stderr, /queue\.url: unknown connection key "target_session_attrs"/);
  });
});

/** asyncproxy's table in `schema`, built by its migrations in order (migrations/*.sql). */
async function asyncproxyTable(schema: string): Promise<string> {
  const t = `"${schema}".proxy_requests`;
  await pgQuery(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  for (const sql of [
    `CREATE TABLE IF NOT EXISTS ${t} (id varchar NOT NULL, timestamp timestamp without time zone NOT NULL,
       processed boolean NOT NULL, method varchar NOT NULL, header varchar NOT NULL, body text, origin_url varchar NOT NULL)`,
    `ALTER TABLE ${t} ADD COLUMN attempt SMALLINT NOT NULL DEFAULT 0`,
    `ALTER TABLE ${t} ALTER COLUMN processed DROP NOT NULL`,
    `CREATE INDEX proxy_requests_timestamp_idx ON ${t} (timestamp)`,
    `ALTER TABLE ${t} DROP COLUMN processed`,
    `ALTER TABLE ${t} ADD PRIMARY KEY (id)`,
    `DROP INDEX "${schema}".proxy_requests_timestamp_idx`,
    `CREATE INDEX proxy_requests_truncated_timestamp_idx ON ${t} (date_trunc('minute', timestamp))`,
  ])
    await pgQuery(sql);
  return `${schema}.proxy_requests`;
}

/** Rows as asyncproxy's EnqueueRequest writes them (uuid id, JSON of http.Header, attempt 1). */
async function fill(table: string, n: number): Promise<void> {
  const [schema] = table.split('.');
  for (let i = 0; i < n; i++)
    await pgQuery(
      `INSERT INTO "${schema}".proxy_requests (timestamp, id, method, header, body, origin_url, attempt)
       VALUES (now(), gen_random_uuid()::text, 'POST', $1, $2, $3, $4)`,
      [JSON.stringify({ 'Content-Type': ['text/plain'], 'X-Trace': ['a', 'b'] }), `row ${i}`, `/imported/${i}?n=${i}`, i === 0 ? 3 : 1],
    );
}

async function runImport(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const cli = spawnCli(['queue', 'import', '--from', 'asyncproxy', ...args], env);
  const code = await cli.exited;
  assert.equal(code, 0, `import failed: ${cli.stderr}`);
  return cli.stdout;
}

describe('manifold queue import --from asyncproxy', { timeout: 60_000 }, () => {
  test('same PostgreSQL: stopped after 3 rows and run again, every row delivered once', async (t) => {
    const remote = await startRemote();
    t.after(() => remote.up.close());
    const source = freshSchema(t, 'ap_src');
    const target = freshSchema(t, 'ap_dst');
    const table = await asyncproxyTable(source);
    await fill(table, 10);
    const config = seedConfig(remote.up.url);
    const env = { MANIFOLD_QUEUE__SCHEMA: target };

    const partial = await runImport(['--config', config, '--table', table, '--batch', '1', '--limit', '3'], env);
    assert.match(partial, /^imported 3 requests from .* into route asyncproxy, each batch in one transaction/m);
    assert.match(partial, /^moved 1$/m);
    const left = await pgQuery(`SELECT count(*)::int AS n FROM "${source}".proxy_requests`);
    assert.equal(left.rows[0].n, 7, 'the rest waits in asyncproxy table');
    const rest = await runImport(['--config', config, '--table', table, '--batch', '4'], env);
    assert.match(rest, /^imported 7 requests/m);
    assert.equal((await pgQuery(`SELECT count(*)::int AS n FROM "${source}".proxy_requests`)).rows[0].n, 0);
    assert.match(await runImport(['--config', config, '--table', table], env), /^imported 0 requests/m);

    // The row that had used 2 attempts in asyncproxy keeps only what is left of max_retries + 1.
    const { rows } = await pgQuery(`SELECT url, max_attempts FROM "${target}".jobs ORDER BY url`);
    assert.equal(rows.length, 10);
    assert.equal(rows.find((r) => r.url === '/imported/0?n=0')?.max_attempts, 1001 - 2);

    const gw = await start(t, ['--config', config], { ...env, SERVER_ENQUEUE_RATE: '0' });
    await until(() => Array.from({ length: 10 }, (_, i) => remote.to(`/imported/${i}?n=${i}`).length > 0).every(Boolean), 'every row delivered');
    for (let i = 0; i < 10; i++) {
      const seen = remote.to(`/imported/${i}?n=${i}`);
      assert.equal(seen.length, 1, `row ${i} delivered once`);
      assert.equal(seen[0].body, `row ${i}`);
      assert.equal(seen[0].headers['content-type'], 'text/plain');
      assert.equal(seen[0].headers['x-trace'], 'a, b');
    }
    assert.equal(await stopped(gw.cli), 0);
  });

  test('SQLite queue: a batch stored before an interruption is not stored twice on the next run', async (t) => {
    const remote = await startRemote();
    t.after(() => remote.up.close());
    const source = freshSchema(t, 'ap_src');
    const table = await asyncproxyTable(source);
    await fill(table, 6);
    const queueFile = join(dir, `import-${++seq}.db`);
    const config = join(dir, `manifold-${seq}.yaml`);
    writeFileSync(
      config,
      `listen: { host: 127.0.0.1, port: 0 }
workers: 0
admin: { enabled: false }
metrics: { port: 0, host: 127.0.0.1 }
pools: { remote: { targets: [${remote.up.url}] } }
queue: { driver: sqlite, path: ${queueFile} }
routes:
  - id: hooks
    match: {}
    defer: { pool: remote, host: target, max_attempts: 5 }
`,
    );
    const partial = await runImport(['--config', config, '--url', LIBPQ, '--table', table, '--batch', '2', '--limit', '2'], {});
    assert.match(partial, /^imported 2 requests from .* into route hooks$/m);
    // An import killed after its batch was committed to the queue but before the rows were
    // deleted: the next row's job is in the queue while the row still waits in the table.
    const { rows } = await pgQuery<AsyncproxyRow>(
      `SELECT id, timestamp, method, header, body, origin_url, attempt FROM "${source}".proxy_requests ORDER BY timestamp, id LIMIT 1`,
    );
    const q = new SqliteQueue({ path: queueFile });
    await q.enqueue(rowToJob(rows[0], 'hooks', 5));
    await q.close();
    const rest = await runImport(['--config', config, '--url', LIBPQ, '--table', table], {});
    assert.match(rest, /^imported 4 requests from .* into route hooks \(1 were already there from an earlier run\)$/m);

    const gw = await start(t, ['--config', config], {});
    await until(() => Array.from({ length: 6 }, (_, i) => remote.to(`/imported/${i}?n=${i}`).length > 0).every(Boolean), 'every row delivered');
    // Poll a little longer: a duplicate job would be delivered right after the others.
    await until(async () => (await send(`${gw.metricsUrl}/metrics`)).text.includes('manifold_queue_jobs{route="hooks",state="done"} 6'), 'six jobs done');
    for (let i = 0; i < 6; i++) assert.equal(remote.to(`/imported/${i}?n=${i}`).length, 1, `row ${i} delivered once`);
    assert.equal(await stopped(gw.cli), 0);
  });
});
