/**
 * Issue 11 item 2 (acceptance): a WebSocket upgrade spends its attempt through the strategy
 * runner and the route's Forward. A pool of [dead target, live WS target], dead one listed
 * first: the upgrade's connect failure is retried on the live target, the failure is counted
 * against the dead target (attempt metrics, target stats, passive health), and with `passive`
 * configured the dead target is ejected, after which upgrades go straight to the live one.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { deadAddress, type Gateway, startGateway, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { parseExposition, total } from '../helpers/prom.ts';
import { type ManagedGateway, startManaged } from './admin-gateway.ts';

async function wsUpstream(): Promise<{ up: Upstream; wss: WebSocketServer; upgrades: () => number }> {
  let upgrades = 0;
  const up = await startUpstream((_req, res) => {
    res.writeHead(426);
    res.end();
  });
  const wss = new WebSocketServer({ noServer: true });
  up.server.on('upgrade', (req, socket, head) => {
    upgrades++;
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (d) => ws.send(`echo ${d.toString()}`)));
  });
  return { up, wss, upgrades: () => upgrades };
}

/** Opens a WebSocket through the gateway, checks one echo, closes it. */
async function roundTrip(port: number): Promise<void> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`);
  await once(ws, 'open');
  ws.send('hi');
  const [data] = (await once(ws, 'message')) as [Buffer];
  assert.equal(data.toString(), 'echo hi');
  ws.close();
  await once(ws, 'close');
}

const config = (dead: string, live: string) => `
log: { level: info }
pools:
  ws:
    targets: [${dead}, ${live}]
    passive: { failures: 2, ejection: 30s }
routes:
  - { match: { path: /* }, proxy: { pool: ws, order: listed } }
`;

describe('issue 11: upgrades through the strategy runner', () => {
  let live: Awaited<ReturnType<typeof wsUpstream>>;
  let dead: string;
  let gw: Gateway;
  before(async () => {
    live = await wsUpstream();
    dead = await deadAddress();
    gw = await startGateway(config(dead, live.up.url));
  });
  after(async () => {
    await gw.close();
    live.wss.close();
    await live.up.close();
  });

  const deadId = () => new URL(dead).host;
  const liveId = () => `127.0.0.1:${live.up.port}`;
  const metrics = async () => parseExposition(await gw.runtime.metrics!.registry.metrics());
  const attempts = async (target: string, outcome: string) =>
    total(await metrics(), 'manifold_attempts_total', { route: 'route-0', pool: 'ws', target, outcome });

  test('a connect failure is retried on the next target, counted against the dead one, which is then ejected', async () => {
    await roundTrip(gw.port);
    // Counted when the tunnel ends, which the gateway sees just after the client.
    await until(async () => (await attempts(liveId(), 'accepted')) === 1, 'the tunnel counted');
    assert.equal(await attempts(deadId(), 'failed'), 1);
    assert.equal(total(await metrics(), 'manifold_target_ejected', { pool: 'ws', target: deadId() }), 0);
    const line = await until(() => gw.logs.access().find((l) => l.upgrade === true), 'the access line');
    assert.equal(line.status, 101);
    assert.equal(line.target, liveId());
    assert.deepEqual(
      (line.attempts as Array<{ target: string; outcome: string; error?: string }>).map((a) => [
        a.target,
        a.outcome,
        a.error,
      ]),
      [
        [deadId(), 'failed', 'TARGET_UNREACHABLE'],
        [liveId(), 'accepted', undefined],
      ],
    );

    // The second failure reaches `passive.failures: 2`: the dead target is ejected.
    await roundTrip(gw.port);
    await until(async () => (await attempts(liveId(), 'accepted')) === 2, 'the second tunnel counted');
    assert.equal(await attempts(deadId(), 'failed'), 2);
    const m = await metrics();
    assert.equal(total(m, 'manifold_target_ejected', { pool: 'ws', target: deadId() }), 1);
    assert.equal(total(m, 'manifold_target_ejections_total', { pool: 'ws', target: deadId() }), 1);

    // Ejected: the next upgrade goes straight to the live target, no attempt on the dead one.
    await roundTrip(gw.port);
    await until(async () => (await attempts(liveId(), 'accepted')) === 3, 'the third tunnel counted');
    assert.equal(await attempts(deadId(), 'failed'), 2);
  });
});

describe('issue 11: an upgrade failure is visible in the admin API', () => {
  let live: Awaited<ReturnType<typeof wsUpstream>>;
  let dead: string;
  let gw: ManagedGateway;
  before(async () => {
    live = await wsUpstream();
    dead = await deadAddress();
    gw = await startManaged(config(dead, live.up.url), 0);
  });
  after(async () => {
    await gw.close();
    live.wss.close();
    await live.up.close();
  });

  test('GET /stats/detail: the dead target has the failures and is ejected', async () => {
    const port = Number(new URL(gw.url).port);
    await roundTrip(port);
    await roundTrip(port);
    const view = await until(async () => {
      const r = await gw.admin('GET', '/stats/detail');
      const t = r.json<Array<{ id: string; state: string; failures: number }>>().find(
        (x) => x.id === new URL(dead).host,
      );
      return t?.state === 'ejected' ? t : null;
    }, 'the dead target ejected');
    assert.equal(view.failures, 2);
  });
});

describe('issue 11: an upgrade runs as single whatever the route strategy', () => {
  test('a fanout route opens one tunnel, not one per target', async (t) => {
    const a = await wsUpstream();
    const b = await wsUpstream();
    const gw = await startGateway(`
pools:
  ws: { targets: [${a.up.url}, ${b.up.url}] }
routes:
  - { match: { path: /* }, proxy: { pool: ws, strategy: fanout } }
`);
    t.after(async () => {
      await gw.close();
      for (const x of [a, b]) {
        x.wss.close();
        await x.up.close();
      }
    });
    await roundTrip(gw.port);
    await roundTrip(gw.port);
    assert.equal(a.upgrades() + b.upgrades(), 2);
  });
});
