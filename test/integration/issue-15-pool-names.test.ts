/**
 * Issue 15, item 3: pool names that are also Object.prototype's (`constructor`, `toString`,
 * `hasOwnProperty`, `valueOf`) are ordinary names: the admin API creates, lists and deletes
 * them and keeps working; `__proto__`, the one name the shared pattern refuses, is a 400; and
 * a `state_file` entry that cannot be applied is logged and skipped, entry by entry, never a
 * failed start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream } from '../helpers/index.ts';
import { MODES, type ManagedGateway, startManaged } from './admin-gateway.ts';

const NAMES = ['constructor', 'toString', 'hasOwnProperty', 'valueOf'];

for (const mode of MODES) {
  describe(`issue 15: prototype-named pools (${mode.name})`, { timeout: 90_000 }, () => {
    let a: Upstream;
    let dir: string;
    let gw: ManagedGateway | null = null;
    before(async () => {
      a = await startUpstream((_req, res) => res.end('a'));
      dir = mkdtempSync(join(tmpdir(), 'manifold-issue15-names-'));
    });
    after(async () => {
      await gw?.close();
      await a.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const yaml = () => `
log: { level: warn, access: false }
state_file: ${join(dir, 'state.json')}
pools:
  default: { targets: [${a.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: default } }
`;

    test('the admin API creates, lists, edits and deletes them; a restart serves them', async () => {
      gw = await startManaged(yaml(), mode.workers);
      for (const name of NAMES) {
        const r = await gw.admin('POST', '/pools', { name, targets: [a.url] });
        assert.equal(r.status, 201, `${name}: ${r.text}`);
        assert.equal(r.json<{ pool: { name: string } }>().pool.name, name);
      }
      const proto = await gw.admin('POST', '/pools', { name: '__proto__', targets: [a.url] });
      assert.equal(proto.status, 400, proto.text);
      // Every later change still works.
      const t = await gw.admin('POST', '/pools/default/targets', { url: 'http://127.0.0.1:1', id: 'x' });
      assert.equal(t.status, 201, t.text);
      for (const name of NAMES) {
        const g = await gw.admin('GET', `/pools/${name}`);
        assert.equal(g.status, 200, `${name}: ${g.text}`);
        assert.equal(g.json<{ pool: { targets: unknown[] } }>().pool.targets.length, 1);
      }
      const list = await gw.admin('GET', '/pools');
      assert.equal(list.status, 200);
      const names = list.json<{ pools: Array<{ name: string }> }>().pools.map((p) => p.name);
      for (const name of NAMES) assert.ok(names.includes(name), `${name} in ${names}`);
      // An unknown name that Object.prototype has is a 404, not a 500.
      for (const name of ['isPrototypeOf', 'propertyIsEnumerable']) {
        const r = await gw.admin('GET', `/pools/${name}`);
        assert.equal(r.status, 404, `${name}: ${r.text}`);
        const d = await gw.admin('POST', `/pools/${name}/targets`, { url: a.url });
        assert.equal(d.status, 404, `${name}: ${d.text}`);
      }
      assert.equal((await gw.admin('DELETE', '/pools/valueOf')).status, 200);
      assert.equal((await gw.admin('GET', '/pools/valueOf')).status, 404);
      await gw.close();
      gw = null;

      gw = await startManaged(yaml(), mode.workers);
      const after = (await gw.admin('GET', '/pools')).json<{ pools: Array<{ name: string }> }>();
      const kept = after.pools.map((p) => p.name).sort();
      assert.deepEqual(kept, ['constructor', 'default', 'hasOwnProperty', 'toString'].sort());
      assert.equal((await gw.get('/')).text, 'a');
      await gw.close();
      gw = null;
    });

    test('a state_file entry that cannot be applied is logged and skipped; the rest is kept', async () => {
      const state = join(dir, 'state.json');
      writeFileSync(
        state,
        JSON.stringify({
          version: 1,
          overlay: {
            created: {
              good: { targets: [a.url] },
              constructor: { targets: [a.url] },
              ['__proto__']: { targets: [a.url] },
              'bad name!': { targets: [a.url] },
              broken: { targets: 'not a list' },
              wrong: { targets: [a.url], selector: 'nonsense' },
            },
            deleted: ['nope', 42],
            targets: {
              default: { extra: { url: 'http://127.0.0.1:1', id: 'extra' }, junk: 7 },
              missing: { y: { url: 'http://127.0.0.1:2' } },
              toString: 'nonsense',
            },
          },
        }),
      );
      gw = await startManaged(yaml(), mode.workers);
      const pools = (await gw.admin('GET', '/pools')).json<{
        pools: Array<{ name: string; targets: Array<{ id: string }> }>;
      }>().pools;
      const names = pools.map((p) => p.name).sort();
      assert.deepEqual(names, ['constructor', 'default', 'good']);
      const def = pools.find((p) => p.name === 'default');
      assert.deepEqual(def?.targets.map((t) => t.id).sort(), [`127.0.0.1:${a.port}`, 'extra'].sort());
      assert.equal((await gw.get('/')).text, 'a');
      const skipped = gw.cli.logs().filter((l) => l.msg === 'state file entry skipped');
      assert.ok(skipped.length >= 5, JSON.stringify(skipped));
      // The next change writes a clean state file.
      assert.equal((await gw.admin('DELETE', '/pools/good')).status, 200);
      const written = JSON.parse(readFileSync(state, 'utf8'));
      assert.deepEqual(Object.keys(written.overlay.created), ['constructor']);
    });
  });
}
