/**
 * Issue 15, item 7: a defer accept must not wait as long as the database does. The queue's
 * PostgreSQL connection goes through a TCP proxy that can stall (stop forwarding without
 * closing: a black hole) and heal. While stalled, a deferred request gets 503
 * `QUEUE_UNAVAILABLE` within `queue.commit_timeout`, the admin queue read and `GET /ready`
 * answer 503 within it too; after the heal, a job whose sender was refused is never delivered:
 * dropped before its COMMIT, or — refused during the COMMIT round trip — voided (a dead
 * letter); new requests are taken again.
 *
 * Before this change the POST hung for as long as the stall lasted (the client's own timeout
 * fired first) and the job was delivered after the heal: the first test failed at its 503.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { PgQueue } from '../../src/defer/pg-queue.ts';
import { VOIDED } from '../../src/defer/queue-core.ts';
import { startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { dropSchema, newSchemaName, PG_URL, pgQuery } from '../helpers/pg.ts';
import { type ManagedGateway, startManaged } from './admin-gateway.ts';

/** A TCP proxy to PostgreSQL that can stop forwarding (both ways) and start again. */
class StallingProxy {
  server: Server;
  port = 0;
  stalled = false;
  /** Stall right after forwarding a client chunk that contains this text (e.g. COMMIT). */
  stallAfter: string | null = null;
  #held: Array<() => void> = [];
  #sockets = new Set<Socket>();

  constructor(target: URL) {
    this.server = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {});
      }
      const relay = (from: Socket, to: Socket, toServer: boolean) =>
        from.on('data', (chunk: Buffer) => {
          if (this.stalled) {
            this.#held.push(() => to.write(chunk));
            return;
          }
          to.write(chunk);
          if (toServer && this.stallAfter !== null && chunk.includes(this.stallAfter)) {
            this.stallAfter = null;
            this.stalled = true;
          }
        });
      relay(client, upstream, true);
      relay(upstream, client, false);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  url(): string {
    const u = new URL(PG_URL);
    u.host = `127.0.0.1:${this.port}`;
    return u.toString();
  }

  heal(): void {
    this.stalled = false;
    for (const write of this.#held.splice(0)) write();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

describe('queue.commit_timeout: the store as a black hole (PgQueue)', () => {
  const schema = newSchemaName('commit_timeout');
  let proxy: StallingProxy;
  let queue: PgQueue;
  before(async () => {
    proxy = new StallingProxy(new URL(PG_URL));
    await proxy.listen();
    queue = await PgQueue.open({ connectionString: proxy.url(), schema, commitTimeoutMs: 300, onError: () => {} });
  });
  after(async () => {
    proxy.heal();
    await queue.close();
    await proxy.close();
    await dropSchema(schema);
  });

  const job = { route: 'r', method: 'POST', url: '/x', headers: [], body: new Uint8Array(), maxAttempts: 3 };
  const stored = async () =>
    (
      await pgQuery<{ id: string; state: string; last_error: string | null }>(
        `SELECT id, state, last_error FROM "${schema}".jobs ORDER BY id`,
      )
    ).rows;

  test('stalled before the commit: 503 within the bound, reads too, and the job is never stored', async () => {
    const first = await queue.enqueue(job);
    assert.equal(first.duplicate, false);
    assert.deepEqual(queue.health(), { ok: true });

    proxy.stalled = true;
    const refused = await queue.enqueue(job).then(
      () => null,
      (err: { code?: string }) => err,
    );
    assert.equal(refused?.code, 'QUEUE_UNAVAILABLE');
    assert.match(String((refused as Error).message), /queue\.commit_timeout/);
    await assert.rejects(queue.depth(), { code: 'QUEUE_UNAVAILABLE' });
    await assert.rejects(queue.ping(), { code: 'QUEUE_UNAVAILABLE' });
    assert.equal(queue.health().ok, false);

    // The refused INSERT was on the wire: after the heal it runs, and is dropped before COMMIT.
    proxy.heal();
    await until(() => queue.stats().waiting === 0, 'the stalled batch to settle');
    await queue.ping();
    assert.deepEqual(
      (await stored()).map((r) => [r.id, r.state]),
      [[first.id, 'pending']],
    );
    const claimed = await queue.claim('r', 10, 60_000);
    assert.deepEqual(
      claimed.map((j) => j.id),
      [first.id],
    );
  });

  test('stalled during the COMMIT round trip: the job landed, and is voided (a dead letter)', async () => {
    proxy.stallAfter = 'COMMIT';
    await assert.rejects(queue.enqueue(job), { code: 'QUEUE_UNAVAILABLE' });
    proxy.heal();
    const rows = await until(async () => {
      const rows = await stored();
      return rows.length === 2 && rows[1].state === 'dead' ? rows : null;
    }, 'the in-doubt commit to be voided');
    assert.equal(rows[1].last_error, VOIDED);
    assert.deepEqual(await queue.claim('r', 10, 60_000), []);
  });
});

describe('queue.commit_timeout through the gateway (defer route, admin API, GET /ready)', () => {
  const schema = newSchemaName('commit_gw');
  let proxy: StallingProxy;
  let target: Upstream;
  let gw: ManagedGateway;
  before(async () => {
    proxy = new StallingProxy(new URL(PG_URL));
    await proxy.listen();
    target = await startUpstream((_req, res) => res.end('delivered'));
    gw = await startManaged(
      `
pools:
  hooks: { targets: [${target.url}] }
routes:
  - match: { path: /hooks/* }
    defer: { pool: hooks, max_attempts: 3 }
queue: { driver: postgres, url: "${proxy.url()}", schema: ${schema}, commit_timeout: 400ms }
`,
      0,
    );
  });
  after(async () => {
    proxy.heal();
    await gw.close();
    await target.close();
    await proxy.close();
    await dropSchema(schema);
  });

  test('503 QUEUE_UNAVAILABLE while the store is away; the refused job is never delivered', async () => {
    const ok = await send(`${gw.url}/hooks/a`, { method: 'POST', body: 'one' });
    assert.equal(ok.status, 202);
    await until(() => target.requests.length === 1, 'the first job delivered');
    assert.equal((await gw.admin('GET', '/ready')).status, 200);

    proxy.stalled = true;
    const refused = await send(`${gw.url}/hooks/b`, { method: 'POST', body: 'two' });
    assert.equal(refused.status, 503);
    assert.equal(JSON.parse(refused.body.toString()).error.code, 'QUEUE_UNAVAILABLE');
    const read = await gw.admin('GET', '/queue');
    assert.equal(read.status, 503);
    assert.equal(JSON.parse(read.body.toString()).error.code, 'QUEUE_UNAVAILABLE');
    const ready = await gw.admin('GET', '/ready');
    assert.equal(ready.status, 503);
    assert.equal(JSON.parse(ready.body.toString()).error.code, 'NOT_READY');

    proxy.heal();
    await until(async () => (await gw.admin('GET', '/ready')).status === 200, 'ready again');
    const depth = JSON.parse((await gw.admin('GET', '/queue')).body.toString());
    assert.deepEqual(
      depth.routes.map((r: { pending: number; inflight: number; dead: number; done: number }) => [
        r.pending + r.inflight,
        r.done,
        r.dead,
      ]),
      [[0, 1, 0]],
    );
    const again = await send(`${gw.url}/hooks/c`, { method: 'POST', body: 'three' });
    assert.equal(again.status, 202);
    await until(() => target.requests.length === 2, 'the new job delivered');
    assert.deepEqual(
      target.requests.map((r) => r.url),
      ['/hooks/a', '/hooks/c'],
    );
  });
});
