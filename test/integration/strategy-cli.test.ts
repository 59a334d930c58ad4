/**
 * Issue #4 point 6: quick mode, the real CLI with no config file —
 * `manifold --endpoints URL,URL [--fanout] [--terminal-responses LIST] [--port N] [--log-file PATH]`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Cli, cliPort, spawnCli, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

const answering = (status: number, name: string) =>
  startUpstream((req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, {
      'x-upstream': name,
      'x-seen-url': req.url ?? '',
      'x-seen-host': req.headers.host ?? '',
    });
    res.end(name);
  });

describe('quick mode', () => {
  let a503: Upstream;
  let a404: Upstream;
  let b200: Upstream;
  let stalled: Upstream;
  let stalledClosed = 0;
  const clis: Cli[] = [];
  let dir: string;

  before(async () => {
    [a503, a404, b200] = await Promise.all([
      answering(503, 'a503'),
      answering(404, 'a404'),
      answering(200, 'b'),
    ]);
    stalled = await startUpstream((_req, res) => {
      res.on('close', () => stalledClosed++);
    });
    dir = mkdtempSync(join(tmpdir(), 'manifold-quick-'));
  });
  after(async () => {
    for (const c of clis) c.kill();
    await Promise.all(clis.map((c) => c.exited));
    await Promise.all([a503, a404, b200, stalled].map((u) => u.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the CLI in quick mode on a free port; returns its base URL. */
  async function quick(...args: string[]): Promise<{ cli: Cli; url: string }> {
    const cli = spawnCli([...args, '--port', '0']);
    clis.push(cli);
    const port = await cliPort(cli);
    return { cli, url: `http://127.0.0.1:${port}` };
  }

  test('--endpoints: tried in the order given; the path prefix and Host come from the endpoint', async () => {
    const { url } = await quick('--endpoints', `${a503.url}/apis,${b200.url}/public-apis`);
    const before = a503.requests.length;
    const r = await send(`${url}/v1/things?x=1`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'b');
    assert.equal(r.headers['x-seen-url'], '/public-apis/v1/things?x=1');
    assert.equal(r.headers['x-seen-host'], `127.0.0.1:${b200.port}`);
    assert.equal(r.headers['x-manifold-target'], `127.0.0.1:${b200.port}/public-apis`);
    assert.equal(a503.requests.length, before + 1);
    assert.equal(a503.requests.at(-1)!.url, '/apis/v1/things?x=1');
  });

  test('default terminal responses accept 4xx; -t 100,200,300 moves on past a 404', async () => {
    const [dflt, strict] = await Promise.all([
      quick('-e', `${a404.url},${b200.url}`),
      quick('-e', `${a404.url},${b200.url}`, '-t', '100,200,300'),
    ]);
    assert.equal((await send(`${dflt.url}/`)).status, 404);
    const r = await send(`${strict.url}/`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'b');
  });

  test('-f fans out: the first accepted answer wins, the stalled endpoint is aborted', async () => {
    const { url } = await quick('-e', `${stalled.url},${b200.url}`, '-f');
    const closed = stalledClosed;
    const r = await send(`${url}/`);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'b');
    await until(() => stalledClosed > closed, 'the stalled endpoint to see its connection close');
  });

  test('--log-file writes the logs, access lines included, to the file', async () => {
    const file = join(dir, 'logs', 'manifold.log');
    const cli = spawnCli(['-e', b200.url, '--port', '0', '--log-file', file]);
    clis.push(cli);
    const lines = () =>
      readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const listening = await until(
      () => lines().find((l) => l.msg === 'manifold listening'),
      'listening line',
    );
    const r = await send(`http://127.0.0.1:${listening.port}/hello`);
    assert.equal(r.status, 200);
    await until(
      () => lines().find((l) => l.msg === 'request' && l.url === '/hello'),
      'access line in the file',
    );
    assert.equal(cli.stdout, '');
  });

  test('bad flags are refused with the flag named', async () => {
    const bad = spawnCli(['-e', `${b200.url},not-a-url`, '-t', '200,abc']);
    const both = spawnCli(['-e', b200.url, '--config', 'x.yaml']);
    const orphan = spawnCli(['--fanout']);
    assert.equal(await bad.exited, 1);
    assert.match(bad.stderr, /flag --endpoints: pools\.endpoints\.targets\[1\]/);
    assert.match(bad.stderr, /flag --terminal-responses: routes\[0\]\.proxy\.terminal\[1\]/);
    assert.equal(await both.exited, 2);
    assert.match(both.stderr, /exclude each other/);
    assert.equal(await orphan.exited, 2);
    assert.match(orphan.stderr, /need --endpoints/);
  });
});
