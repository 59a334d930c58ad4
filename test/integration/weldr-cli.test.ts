/**
 * Issue 12, Weldr: `manifold --pool-api` through the real CLI. Weldr's README lines run as
 * written (real `curl -d` without a content type, DELETE /servers/:ip/:port, /stats,
 * /stats/detail), its proxy tests (tests/test-proxy.rs: every method incl. CONNECT gets an
 * answer, request body echo, chunked request and response), its always-on health checks
 * taking a dead server out, and the admin API's OpenAPI document.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { WELDR_BASE, WELDR_HEALTH } from '../../src/compat/weldr.ts';
import { loadConfigText } from '../../src/config/load.ts';
import { type Cli, cliPorts, deadAddress, freePort, spawnCli, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send, sendRaw } from '../helpers/http.ts';

const run = promisify(execFile);

/** `curl ARGS`, the real binary; returns status and body (`-w` appends the status). */
async function curl(...args: string[]): Promise<{ status: number; body: string }> {
  const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_code}', ...args]);
  const i = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(i + 1)), body: stdout.slice(0, i) };
}

/** Weldr's test origin (tests/test-proxy.rs `Origin`), plus the Host it was sent. */
function origin(): Promise<Upstream> {
  return startUpstream((req, res) => {
    const method = req.method ?? '';
    if (req.url === '/' && method === 'GET') return void res.end('Hello World');
    if (req.url === '/method') {
      if (method === 'HEAD') return void res.setHeader('server', `hello ${method}`).end();
      return void res.end(`hello ${method}`);
    }
    if (req.url === '/echo' && method === 'POST') return void req.pipe(res);
    if (req.url === '/chunked') {
      res.write('Hello Chunky ');
      return void setImmediate(() => res.end('World!'));
    }
    if (req.url === '/host') return void res.end(req.headers.host);
    res.statusCode = 404;
    res.end();
  });
}

/** Ports 0, read back from the log: no port picked first that another test can take meanwhile. */
async function startPoolApi(env: NodeJS.ProcessEnv = {}) {
  const cli = spawnCli(['--pool-api', '-p', '0', '--admin-port', '0', '-w', '0', '--log-level', 'info'], env);
  const { port, adminPort } = await cliPorts(cli);
  return { cli, port, admin: adminPort };
}

test('--pool-api is Weldr: empty pool, catch-all route, Host to the target, health checks, one worker per core', () => {
  const { config } = loadConfigText(WELDR_BASE, 'quick mode (--pool-api)', { env: {} });
  assert.equal(config.workers, 'auto');
  assert.deepEqual(config.listen, { host: '0.0.0.0', port: 8080 });
  assert.equal(config.admin.host, '127.0.0.1');
  assert.equal(config.admin.port, 8687);
  assert.equal(config.admin.token || null, null);
  assert.deepEqual(config.pools.default.targets, []);
  assert.deepEqual(
    { ...config.pools.default.health, method: undefined },
    { ...WELDR_HEALTH, method: undefined },
  );
  assert.deepEqual(config.routes[0].proxy?.host, 'target');
});

describe('manifold --pool-api (Weldr)', () => {
  let gw: { cli: Cli; port: number; admin: number };
  let up: Upstream;
  before(async () => {
    up = await origin();
    gw = await startPoolApi();
  });
  after(async () => {
    gw.cli.kill();
    await gw.cli.exited;
    await up.close();
  });

  test("README: curl -d registers a server, the proxy serves it, stats count it, DELETE removes it", async () => {
    const empty = await send(`http://127.0.0.1:${gw.port}/`);
    assert.equal(empty.status, 503, empty.text);
    // Exactly the README's line (it sends application/x-www-form-urlencoded).
    const added = await curl(`localhost:${gw.admin}/servers`, '-d', `{"url":"http://127.0.0.1:${up.port}"}`);
    assert.equal(added.status, 201, added.body);
    assert.equal(JSON.parse(added.body).target.url, `http://127.0.0.1:${up.port}`);
    // Re-adding is not an error in Weldr: 200 with the pool, unchanged.
    const again = await curl(`localhost:${gw.admin}/servers`, '-d', `{"url":"http://127.0.0.1:${up.port}"}`);
    assert.equal(again.status, 200, again.body);
    const listed = JSON.parse(again.body);
    assert.equal(listed.servers.length, 1);
    assert.deepEqual(listed.servers[0].links, [
      { rel: 'delete', href: `/servers/127.0.0.1/${up.port}`, method: 'DELETE' },
    ]);
    // A body that is not JSON is a clear 400 in the one error shape.
    const bad = await curl(`localhost:${gw.admin}/servers`, '-d', `url=http://127.0.0.1:${up.port}`);
    assert.equal(bad.status, 400);
    assert.equal(JSON.parse(bad.body).error.code, 'INVALID_BODY');
    assert.match(JSON.parse(bad.body).error.message, /not JSON/);

    const servers = await curl(`localhost:${gw.admin}/servers`);
    assert.equal(servers.status, 200);
    assert.equal(JSON.parse(servers.body).servers[0].url, `http://127.0.0.1:${up.port}`);

    for (let i = 0; i < 5; i++) {
      const r = await curl(`localhost:${gw.port}/`);
      assert.deepEqual(r, { status: 200, body: 'Hello World' });
    }
    assert.equal((await send(`http://127.0.0.1:${gw.port}/host`)).text, `127.0.0.1:${up.port}`);

    const stats = JSON.parse((await curl(`localhost:${gw.admin}/stats`)).body);
    assert.ok(stats.client.success >= 6, JSON.stringify(stats));
    assert.equal(stats.client.failed, 1); // the 503 while the pool was empty
    assert.ok(stats.server.success >= 6);
    assert.equal(stats.server.failed, 0);
    assert.deepEqual(stats.client, stats.downstream);

    const detail = JSON.parse((await curl(`localhost:${gw.admin}/stats/detail`)).body);
    assert.ok(Array.isArray(detail));
    assert.equal(detail.length, 1);
    assert.deepEqual(
      { id: detail[0].id, ip: detail[0].ip, port: detail[0].port, failed: detail[0].failed },
      { id: `127.0.0.1:${up.port}`, ip: '127.0.0.1', port: String(up.port), failed: 0 },
    );
    assert.ok(detail[0].success >= 6);
    assert.equal(detail[0].state, 'up');

    const removed = await curl('-X', 'DELETE', `localhost:${gw.admin}/servers/127.0.0.1/${up.port}`);
    assert.ok(removed.status === 200 || removed.status === 202, removed.body);
    await until(async () => (await send(`http://127.0.0.1:${gw.port}/`)).status === 503, 'server removed');
    const gone = await curl('-X', 'DELETE', `localhost:${gw.admin}/servers/127.0.0.1/${up.port}`);
    assert.equal(gone.status, 404);
    assert.equal(JSON.parse(gone.body).error.code, 'NOT_FOUND');
  });

  test("Weldr's proxy tests: every method, CONNECT answered, body echo, chunked both ways", async () => {
    await curl(`localhost:${gw.admin}/servers`, '-d', `{"url":"http://127.0.0.1:${up.port}"}`);
    const base = `http://127.0.0.1:${gw.port}`;
    await until(async () => (await send(`${base}/`)).status === 200, 'server added');
    for (const method of ['GET', 'DELETE', 'PATCH', 'OPTIONS', 'POST', 'PUT', 'TRACE', 'HEAD']) {
      const r = await send(`${base}/method`, { method });
      assert.equal(r.status, 200, method);
      assert.equal(method === 'HEAD' ? r.headers.server : r.text, `hello ${method}`, method);
    }
    // CONNECT: a JSON 405 and a closed connection, never zero bytes.
    const connect = await sendRaw(gw.port, `CONNECT 127.0.0.1:${up.port} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`);
    assert.match(connect, /^HTTP\/1\.1 405 /);
    assert.match(connect, /connection: close/i);
    const body = JSON.parse(connect.slice(connect.indexOf('\r\n\r\n') + 4));
    assert.equal(body.error.code, 'METHOD_NOT_ALLOWED');

    const echo = await send(`${base}/echo`, { method: 'POST', body: 'hello' });
    assert.deepEqual([echo.status, echo.text], [200, 'hello']);

    const chunked = await sendRaw(
      gw.port,
      'POST /echo HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\nConnection: close\r\n' +
        'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    );
    assert.match(chunked, /^HTTP\/1\.1 200 /);
    assert.match(chunked, /transfer-encoding: chunked/i);
    assert.equal(chunked.slice(chunked.indexOf('\r\n\r\n') + 4), '5\r\nhello\r\n0\r\n\r\n');

    const streamed = await send(`${base}/chunked`);
    assert.equal(streamed.status, 200);
    assert.equal(streamed.text, 'Hello Chunky World!');
    assert.equal(streamed.headers['transfer-encoding'], 'chunked');
  });

  test('GET /openapi.json is an OpenAPI document listing the admin routes', async () => {
    const r = await send(`http://127.0.0.1:${gw.admin}/openapi.json`);
    assert.equal(r.status, 200);
    const doc = r.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>();
    assert.match(doc.openapi, /^3\./);
    for (const [path, method] of [
      ['/servers', 'get'],
      ['/servers', 'post'],
      ['/servers/{ip}/{port}', 'delete'],
      ['/stats', 'get'],
      ['/stats/detail', 'get'],
      ['/pools', 'get'],
      ['/pools/{pool}/targets', 'post'],
    ] as const)
      assert.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} in ${Object.keys(doc.paths)}`);
  });
});

test('a dead server added by the API is taken out by the health checks; traffic goes to the live one', async () => {
  const up = await origin();
  const dead = await deadAddress();
  const gw = await startPoolApi({ MANIFOLD_POOLS__DEFAULT__HEALTH__INTERVAL: '100ms' });
  after(async () => {
    gw.cli.kill();
    await gw.cli.exited;
    await up.close();
  });
  for (const url of [up.url, dead])
    assert.equal((await curl(`localhost:${gw.admin}/servers`, '-d', JSON.stringify({ url }))).status, 201);
  const deadId = new URL(dead).host;
  await until(
    async () => {
      const detail = (await send(`http://127.0.0.1:${gw.admin}/stats/detail`)).json<Array<{ id: string; state: string }>>();
      return detail.find((t) => t.id === deadId)?.state === 'down';
    },
    'dead server marked down',
    20_000,
  );
  // The log line is written asynchronously (pino's async destination): poll for it too.
  await until(
    () => gw.cli.logs().some((l) => l.target === deadId && /down/.test(String(l.msg))),
    'the manager logs the target going down',
    20_000,
  );
  for (let i = 0; i < 20; i++) {
    const r = await send(`http://127.0.0.1:${gw.port}/`);
    assert.deepEqual([r.status, r.text], [200, 'Hello World'], `request ${i}`);
  }
});

test('health checks mark a server down on the 3rd failed check in a row, not before (Weldr fall = 3)', async () => {
  // Each check is held until the test answers it, so the count is exact without timing.
  const held: Array<() => void> = [];
  const sick = await startUpstream((req, res) => {
    if (req.headers['user-agent'] !== 'manifold-health-check') return void res.end('ok');
    held.push(() => {
      res.statusCode = 503;
      res.end();
    });
  });
  const gw = await startPoolApi({ MANIFOLD_POOLS__DEFAULT__HEALTH__INTERVAL: '50ms' });
  after(async () => {
    gw.cli.kill();
    await gw.cli.exited;
    await sick.close();
  });
  const id = `127.0.0.1:${sick.port}`;
  const state = async () =>
    (await send(`http://127.0.0.1:${gw.admin}/stats/detail`))
      .json<Array<{ id: string; state: string }>>()
      .find((t) => t.id === id)?.state;
  assert.equal((await curl(`localhost:${gw.admin}/servers`, '-d', JSON.stringify({ url: sick.url }))).status, 201);
  for (let n = 1; n <= 2; n++) {
    await until(() => held.length === 1, `health check ${n}`);
    held.shift()!();
    await until(() => held.length === 1, `health check ${n + 1} started`);
    assert.equal(await state(), 'up', `still up after ${n} failed check(s)`);
  }
  held.shift()!();
  await until(async () => (await state()) === 'down', 'down after the 3rd failed check');
});

test('--pool-api with workers (-w 2): a server added by the API serves in every worker, stats summed', async () => {
  const up = await origin();
  const port = await freePort();
  const cli = spawnCli(['--pool-api', '-p', String(port), '--admin-port', '0', '-w', '2']);
  after(async () => {
    cli.kill();
    await cli.exited;
    await up.close();
  });
  const { adminPort: admin } = await cliPorts(cli);
  const added = await curl(`localhost:${admin}/servers`, '-d', `{"url":"http://127.0.0.1:${up.port}"}`);
  assert.equal(added.status, 201, added.body);
  for (let i = 0; i < 10; i++) assert.equal((await send(`http://127.0.0.1:${port}/`)).text, 'Hello World');
  const stats = JSON.parse((await curl(`localhost:${admin}/stats`)).body);
  assert.equal(stats.workers, 2);
  assert.deepEqual(stats.client, { success: 10, failed: 0 });
});
