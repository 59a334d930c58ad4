/**
 * Issue 3 point 7: hot reload. `POST /config/reload` and SIGHUP re-read the config file; a
 * valid one is served without dropping in-flight requests or keep-alive connections, an
 * invalid one is refused (422, errors logged) and the old config keeps serving. Admin API
 * changes stay on top of the reloaded file.
 */
import assert from 'node:assert/strict';
import { Agent, request, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream, until } from '../helpers/index.ts';
import { MODES, type ManagedGateway, startManaged } from './admin-gateway.ts';

const yaml = (a: string, b: string, routes: string) => `
log: { level: info, access: false }
pools:
  a: { targets: [${a}] }
  b: { targets: [${b}] }
routes:
${routes}
`;

/** A GET on a keep-alive agent; tells whether the socket was reused. */
function keepAliveGet(agent: Agent, url: string): Promise<{ status: number; text: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const mode of MODES) {
  describe(`hot reload (${mode.name})`, () => {
    let a: Upstream;
    let b: Upstream;
    let gw: ManagedGateway;
    const held: ServerResponse[] = [];
    const v1 = () => yaml(a.url, b.url, '  - { match: { path: /v1/* }, proxy: { pool: a } }');
    const v2 = () =>
      yaml(
        a.url,
        b.url,
        '  - { match: { path: /v1/* }, proxy: { pool: a } }\n  - { match: { path: /v2/* }, proxy: { pool: b } }',
      );
    before(async () => {
      a = await startUpstream((req, res) => {
        if (req.url === '/v1/slow') held.push(res);
        else res.end('a');
      });
      b = await startUpstream((_req, res) => res.end('b'));
      gw = await startManaged(v1(), mode.workers);
    });
    after(async () => {
      await gw.close();
      await Promise.all([a.close(), b.close()]);
    });

    test('a valid file is swapped in; in-flight requests and keep-alive connections carry on', async () => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        assert.equal((await keepAliveGet(agent, `${gw.url}/v1/x`)).text, 'a');
        assert.equal((await gw.get('/v2/x')).status, 404);
        const slow = gw.get('/v1/slow');
        await until(() => held.length === 1, 'a request in flight');
        gw.write(v2());
        const r = await gw.admin('POST', '/config/reload');
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json<{ reloaded: boolean }>().reloaded, true);
        assert.deepEqual(r.json<{ restart_required: string[] }>().restart_required, []);
        // Every worker serves the new routes once the call has answered.
        for (let i = 0; i < 6; i++) assert.equal((await gw.get('/v2/x')).text, 'b');
        const again = await keepAliveGet(agent, `${gw.url}/v1/x`);
        assert.deepEqual(again, { status: 200, text: 'a', reused: true });
        held.shift()!.end('a-slow');
        assert.equal((await slow).text, 'a-slow');
      } finally {
        agent.destroy();
      }
    });

    test('a broken file is refused with its errors; the old routes keep serving', async () => {
      gw.write(v2().replace('proxy: { pool: b }', 'proxy: { pool: bb }'));
      const r = await gw.admin('POST', '/config/reload');
      assert.equal(r.status, 422, r.text);
      const e = r.json<{ error: { code: string; message: string; problems: string[] } }>().error;
      assert.equal(e.code, 'CONFIG_INVALID');
      assert.match(e.problems[0], /\.yaml:\d+: routes\[1\]\.proxy\.pool: unknown pool "bb"/);
      gw.write('pools: [this is: not valid');
      assert.equal((await gw.admin('POST', '/config/reload')).status, 422);
      // The log is written asynchronously: it can trail the admin answer.
      await until(
        () => gw.cli.logs().some((l) => l.msg === 'config reload refused; the old config keeps serving'),
        'the refusal logged',
      );
      for (let i = 0; i < 4; i++) {
        assert.equal((await gw.get('/v1/x')).text, 'a');
        assert.equal((await gw.get('/v2/x')).text, 'b');
      }
    });

    test('SIGHUP reloads; a broken file on SIGHUP is logged and changes nothing', async () => {
      const refusedBefore = gw.cli
        .logs()
        .filter((l) => l.msg?.toString().startsWith('config reload refused')).length;
      gw.cli.kill('SIGHUP');
      await until(
        () =>
          gw.cli.logs().filter((l) => l.msg === 'config reload refused; the old config keeps serving')
            .length > refusedBefore,
        'the refusal logged',
      );
      assert.equal((await gw.get('/v2/x')).text, 'b');
      gw.write(v1());
      gw.cli.kill('SIGHUP');
      await until(async () => (await gw.get('/v2/x')).status === 404, '/v2 gone after SIGHUP');
      assert.equal((await gw.get('/v1/x')).text, 'a');
    });

    test('admin API changes stay on top of a reloaded file', async () => {
      assert.equal((await gw.admin('POST', '/pools/a/targets', { url: b.url })).status, 201);
      gw.write(v2());
      assert.equal((await gw.admin('POST', '/config/reload')).status, 200);
      const pool = (await gw.admin('GET', '/pools/a')).json<{ pool: { targets: Array<{ url: string }> } }>()
        .pool;
      assert.deepEqual(pool.targets.map((t) => t.url).sort(), [a.url, b.url].sort());
      const seen = new Set<string>();
      for (let i = 0; i < 10; i++) seen.add((await gw.get('/v1/x')).text);
      assert.deepEqual([...seen].sort(), ['a', 'b']);
    });
  });
}
