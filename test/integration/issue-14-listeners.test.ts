/**
 * Issue 14, item 1: several listeners. `listeners:` (or the `listen` shorthand, not both),
 * routes limited with `match.listener`, `x-forwarded-proto` per listener, a listener that
 * redirects to https, every worker binding every listener.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { createServer as createNetServer } from 'node:net';
import {
  closeAfter,
  configProblems,
  freePort,
  proxyAll,
  scratch,
  spawnCli,
  startGateway,
  startUpstream,
  until,
} from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { ConfigError, loadConfigText } from '../../src/config/load.ts';

describe('issue 14: listeners in the config', () => {
  test('listen and listeners together are one config error naming listen', () => {
    const problems = configProblems('listen: { port: 8080 }\nlisteners: [{ port: 8081 }]\n');
    assert.equal(problems.length, 1);
    assert.equal(problems[0].path, 'listen');
    assert.match(problems[0].source, /^test\.yaml:1$/);
    assert.match(problems[0].message, /either listen .* or listeners/);
  });

  test('--port / --host (or MANIFOLD_LISTEN__*) with listeners: the error names the flag or variable, not the file', () => {
    const text = 'workers: 0\nlisteners: [{ port: 8081 }]\n';
    const problemsOf = (options: Parameters<typeof loadConfigText>[2]) => {
      try {
        loadConfigText(text, 'test.yaml', options);
        return [];
      } catch (err) {
        return (err as ConfigError).problems;
      }
    };
    const flag = problemsOf({ env: {}, overrides: [{ path: ['listen', 'port'], value: 8090, source: 'flag --port' }] });
    assert.deepEqual(
      flag.map((p) => [p.source, p.path]),
      [['flag --port', 'listen.port']],
    );
    assert.match(flag[0].message, /this config has listeners: set listeners\[N\]\.port in the file instead/);
    const env = problemsOf({ env: { MANIFOLD_LISTEN__HOST: '0.0.0.0' } });
    assert.deepEqual(
      env.map((p) => [p.source, p.path]),
      [['env MANIFOLD_LISTEN__HOST', 'listen.host']],
    );
  });

  test('duplicate names and addresses, unknown match.listener, unknown keys', () => {
    const problems = configProblems(`listeners:
  - { name: web, port: 8080 }
  - { name: web, port: 8080 }
`);
    const by = (path: string) => problems.find((p) => p.path === path)?.message;
    assert.match(by('listeners[1].name') ?? '', /duplicate listener name "web"/);
    assert.match(by('listeners[1].port') ?? '', /0\.0\.0\.0:8080 is listeners\[0\] already/);
    const shape = configProblems('listeners: [{ port: 8443, tls: { cert: a, key: b, colour: red } }]\n');
    assert.deepEqual(shape.map((p) => [p.path, p.message]), [['listeners[0].tls.colour', 'unknown key']]);
    // Compile problems come after the shape is right: fix the shape, see the route's.
    const second = configProblems(`listeners:
  - { name: web, port: 8080 }
routes:
  - match: { listener: [web, nope] }
    respond: { status: 200 }
`);
    assert.deepEqual(
      second.map((p) => [p.path, p.message]),
      [['routes[0].match.listener', 'unknown listener "nope" (listeners: web)']],
    );
  });

  test('the listen shorthand is the listener named default', () => {
    assert.deepEqual(configProblems('routes: [{ match: { listener: default }, respond: { status: 204 } }]\n'), []);
  });
});

describe('issue 14: two listeners in one gateway', async () => {
  const upstream = await startUpstream((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, proto: req.headers['x-forwarded-proto'] }));
  });
  const gw = await startGateway(`
listeners:
  - { name: public, host: 127.0.0.1, port: 0 }
  - { name: internal, host: 127.0.0.1, port: 0 }
  - { name: redirect, host: 127.0.0.1, port: 0, redirect_https: { port: 8443 } }
pools:
  app: { targets: ["${upstream.url}"] }
routes:
  - id: internal-only
    match: { path: /admin/*, listener: internal }
    proxy: { pool: app }
  - id: acme
    match: { path: /.well-known/acme-challenge/*, listener: redirect }
    respond: { status: 200, body: token }
  - id: everything
    match: { path: /* }
    proxy: { pool: app }
`);
  closeAfter(gw, upstream);
  const on = (name: string, path: string) => `http://127.0.0.1:${gw.ports[name]}${path}`;

  test('every listener is bound, each on its own port', () => {
    assert.equal(Object.keys(gw.ports).length, 3);
    assert.equal(new Set(Object.values(gw.ports)).size, 3);
    assert.equal(gw.port, gw.ports.public);
  });

  test('match.listener limits a route to the listeners it names', async () => {
    const inside = await send(on('internal', '/admin/users'));
    assert.equal(inside.status, 200);
    assert.equal(inside.json().url, '/admin/users');
    // On the public listener the internal route does not exist: the catch-all takes it.
    const outside = await send(on('public', '/admin/users'));
    assert.equal(outside.status, 200);
    const log = await until(() => gw.logs.access().filter((l) => l.url === '/admin/users'), 'access lines');
    assert.deepEqual(log.map((l) => l.route).sort(), ['everything', 'internal-only']);
  });

  test('x-forwarded-proto is http on a plain listener, whatever the client claims', async () => {
    const r = await send(on('public', '/x'), { headers: { 'x-forwarded-proto': 'https' } });
    assert.equal(r.json().proto, 'http');
  });

  test('a redirect_https listener answers 308 to the same host and path over https', async () => {
    const r = await send(on('redirect', '/a/b?c=1'), { headers: { host: 'Shop.Example.com:8080' }, method: 'POST', body: 'x' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, 'https://shop.example.com:8443/a/b?c=1');
    assert.equal(r.body.length, 0);
    assert.equal(upstream.requests.filter((q) => q.url === '/a/b?c=1').length, 0, 'nothing was forwarded');
  });

  test('routes that name the redirect listener are still served on it (ACME http-01)', async () => {
    const r = await send(on('redirect', '/.well-known/acme-challenge/abc'));
    assert.equal(r.status, 200);
    assert.equal(r.text, 'token');
  });

  test('a redirect without a Host is a 400, not a Location of nothing', async () => {
    const { sendRaw } = await import('../helpers/http.ts');
    const raw = await sendRaw(gw.ports.redirect, 'GET / HTTP/1.0\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 400 /);
  });
});

test('issue 14: with two workers every worker binds every listener; SIGTERM stops them all', async () => {
  const upstream = await startUpstream((_req, res) => res.end(String(process.pid)));
  after(() => upstream.close());
  const [a, b] = [await freePort(), await freePort()];
  const dir = scratch('manifold-listeners-');
  const file = dir.configFile(`workers: 2
admin: { enabled: false }
listeners:
  - { name: one, host: 127.0.0.1, port: ${a} }
  - { name: two, host: 127.0.0.1, port: ${b} }
${proxyAll(upstream.url)}`);
  const cli = spawnCli(['--config', file]);
  after(() => cli.kill('SIGKILL'));
  const line = await until(() => cli.logs().find((l) => l.msg === 'manifold listening'), () => `listening: ${cli.stderr}`, 30_000);
  assert.deepEqual(line.listeners, { one: a, two: b });
  assert.equal(line.workers, 2);
  for (const port of [a, b]) assert.equal((await send(`http://127.0.0.1:${port}/`)).status, 200);
  cli.kill('SIGTERM');
  assert.equal(await cli.exited, 0);
  for (const port of [a, b])
    await assert.rejects(send(`http://127.0.0.1:${port}/`), /ECONNREFUSED/);
});

test('issue 14: a port that cannot be bound fails the start naming the listener and its address', async () => {
  const held = createNetServer();
  await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
  after(() => held.close());
  const port = (held.address() as { port: number }).port;
  const dir = scratch('manifold-listeners-');
  const file = dir.configFile(`workers: 0
admin: { enabled: false }
listeners:
  - { name: public, host: 127.0.0.1, port: ${port} }
routes: []
`);
  const cli = spawnCli(['--config', file]);
  after(() => cli.kill('SIGKILL'));
  assert.equal(await cli.exited, 1);
  assert.match(cli.stderr, new RegExp(`could not start: listener "public" on 127\\.0\\.0\\.1:${port}: the address is in use`));
});
