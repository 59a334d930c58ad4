/**
 * Issue 15, item 14: admin validation. Before this change port 0 and a 100,000-character host
 * were accepted, a target whose id was longer than 100 characters could never be PATCHed or
 * DELETEd (414 from fastify's router), a 2 MiB body got 400 instead of 413, and metadata or
 * link-local targets (169.254.169.254, fd00:ec2::254) were accepted with no opt-in.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream } from '../helpers/index.ts';
import { type ManagedGateway, startManaged } from './admin-gateway.ts';

describe('admin validation (issue 15, item 14)', () => {
  let target: Upstream;
  let gw: ManagedGateway;
  before(async () => {
    target = await startUpstream();
    gw = await startManaged(
      `
pools:
  p: { targets: [${target.url}] }
routes:
  - match: {}
    proxy: { pool: p }
`,
      0,
    );
  });
  after(async () => {
    await gw.close();
    await target.close();
  });

  const code = (r: { body: Buffer }) => JSON.parse(r.body.toString()).error.code as string;

  test('port 0 and an over-long host are refused', async () => {
    const zero = await gw.admin('POST', '/pools/p/targets', { url: 'http://127.0.0.1:0' });
    assert.equal(zero.status, 400);
    assert.equal(code(zero), 'INVALID_BODY');
    const long = await gw.admin('POST', '/pools/p/targets', { url: `http://${'a'.repeat(100_000)}.example:80` });
    assert.equal(long.status, 400);
  });

  test('a target with an id over 100 characters can be changed and removed', async () => {
    const url = `${target.url}/${'segment-'.repeat(20)}`;
    const added = await gw.admin('POST', '/pools/p/targets', { url });
    assert.equal(added.status, 201, added.body.toString());
    const id = JSON.parse(added.body.toString()).target.id as string;
    assert.ok(id.length > 100, id);
    const patched = await gw.admin('PATCH', `/pools/p/targets/${encodeURIComponent(id)}`, { drain: true });
    assert.equal(patched.status, 200, patched.body.toString());
    const removed = await gw.admin('DELETE', `/pools/p/targets/${encodeURIComponent(id)}`);
    assert.equal(removed.status, 202, removed.body.toString());
  });

  test('a 2 MiB body is 413 BODY_TOO_LARGE', async () => {
    const r = await gw.admin('POST', '/pools/p/targets', { url: target.url, id: 'x'.repeat(2 * 1024 * 1024) });
    assert.equal(r.status, 413);
    assert.equal(code(r), 'BODY_TOO_LARGE');
  });

  test('metadata and link-local targets need allow_special_targets; loopback and private do not', async () => {
    for (const url of ['http://169.254.169.254', 'http://[fd00:ec2::254]', 'http://169.254.10.1:8080', 'http://[::ffff:169.254.169.254]']) {
      const r = await gw.admin('POST', '/pools/p/targets', { url });
      assert.equal(r.status, 400, url);
      assert.match(JSON.parse(r.body.toString()).error.message, /allow_special_targets/, url);
    }
    assert.equal((await gw.admin('POST', '/pools/p/targets', { url: 'http://10.1.2.3:8080' })).status, 201);
    assert.equal((await gw.admin('POST', '/pools/p/targets', { url: 'http://127.0.0.1:1' })).status, 201);
    // A pool that opts in takes them.
    const pool = await gw.admin('POST', '/pools', {
      name: 'meta',
      allow_special_targets: ['metadata', 'link-local'],
      targets: ['http://169.254.169.254'],
    });
    assert.equal(pool.status, 201, pool.body.toString());
    assert.equal((await gw.admin('POST', '/pools/meta/targets', { url: 'http://169.254.10.1' })).status, 201);
    // Link-local allowed is not metadata allowed, in any spelling of the address.
    const linkLocal = await gw.admin('POST', '/pools', { name: 'll', allow_special_targets: ['link-local'], targets: ['http://169.254.10.1'] });
    assert.equal(linkLocal.status, 201, linkLocal.body.toString());
    for (const url of ['http://169.254.169.254', 'http://[::ffff:169.254.169.254]', 'http://[::ffff:a9fe:a9fe]']) {
      const r = await gw.admin('POST', '/pools/ll/targets', { url });
      assert.equal(r.status, 400, url);
      assert.match(JSON.parse(r.body.toString()).error.message, /metadata/, url);
    }
    // … and a pool that lists nothing refuses loopback too.
    const strict = await gw.admin('POST', '/pools', { name: 'strict', allow_special_targets: [], targets: ['http://127.0.0.1:2'] });
    assert.equal(strict.status, 400);
  });
});
