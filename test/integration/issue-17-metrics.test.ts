/**
 * Issue 17, item 4: connection figures after known traffic, in one process and with
 * `--workers 2` (the Manager sums the workers). Every exchange runs on its own raw connection
 * whose bytes the client counts both ways, so `/metrics` must show exactly those numbers: the
 * connections accepted, closed and open per listener, the tunnels (CONNECT and upgrade) per
 * route, and `manifold_bytes_total` per route, target and direction; `/dashboard/data` shows
 * the same totals. `--stats-interval` prints the live line with them, workers summed.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cliPort, scratch, spawnCli, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { parseExposition, type Sample, total } from '../helpers/prom.ts';
import { MODES, type ManagedGateway, startManaged } from './admin-gateway.ts';

const AUTH = { authorization: 'Bearer s3cret' };

/** Bytes one raw exchange moved, as the client counted them. */
interface Counted {
  sent: number;
  received: number;
}

/**
 * Opens a connection, writes `first`, then for each step waits until `expect` more bytes came
 * and writes `write`; ends after the last step and counts until the server closes.
 */
async function exchange(port: number, first: string | Buffer, steps: Array<{ expect: number; write?: Buffer }> = []): Promise<Counted> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const counted: Counted = { sent: 0, received: 0 };
  let wanted = 0;
  let waiter: (() => void) | null = null;
  socket.on('data', (c: Buffer) => {
    counted.received += c.length;
    if (waiter !== null && counted.received >= wanted) {
      const w = waiter;
      waiter = null;
      w();
    }
  });
  const closed = once(socket, 'close');
  const write = (data: string | Buffer) => {
    counted.sent += Buffer.byteLength(data);
    socket.write(data);
  };
  write(first);
  for (const step of steps) {
    wanted = counted.received + step.expect;
    if (counted.received < wanted) await new Promise<void>((resolve) => (waiter = resolve));
    if (step.write) write(step.write);
  }
  if (steps.length > 0) socket.end();
  await closed;
  return counted;
}

const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

for (const mode of MODES) {
  describe(`connection figures after known traffic (${mode.name})`, { timeout: 90_000 }, () => {
    let up: Upstream;
    let echo: Server;
    let echoPort: number;
    let gw: ManagedGateway;
    let scrape: () => Promise<Sample[]>;
    const web: Counted = { sent: 0, received: 0 };
    const tunnel: Counted = { sent: 0, received: 0 };
    let connections = 0;

    before(async () => {
      up = await startUpstream((req, res) => {
        req.resume();
        req.on('end', () => res.end(`answer to ${req.method} ${req.url}`));
      });
      // The upstream also takes an upgrade (protocol `echo`) and echoes what follows.
      up.server.on('upgrade', (_req, socket) => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
        socket.pipe(socket);
      });
      echo = createServer((s) => s.pipe(s));
      echo.listen(0, '127.0.0.1');
      await once(echo, 'listening');
      echoPort = (echo.address() as { port: number }).port;
      gw = await startManaged(
        `
log: { level: warn, access: false }
admin: { token: s3cret }
pools:
  web: { targets: [${up.url}] }
routes:
  - id: tunnel
    match: {}
    connect: { allow: [127.0.0.1], ports: [${echoPort}] }
  - id: web
    match: { path: /* }
    proxy: { pool: web }
`,
        mode.workers,
      );
      scrape = async () => parseExposition((await gw.admin('GET', '/metrics', undefined, AUTH)).text);

      const add = (into: Counted, c: Counted) => {
        into.sent += c.sent;
        into.received += c.received;
        connections++;
      };
      // Three GETs and a POST, each on its own connection, closed by the gateway after the answer.
      for (let i = 0; i < 3; i++)
        add(web, await exchange(Number(new URL(gw.url).port), `GET /item/${i} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`));
      const body = 'x'.repeat(5000);
      add(
        web,
        await exchange(
          Number(new URL(gw.url).port),
          `POST /upload HTTP/1.1\r\nHost: web\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        ),
      );
      // An upgrade through the same route: the 101 head, then 700 bytes each way.
      const upgradeHead = 'GET /ws HTTP/1.1\r\nHost: web\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n';
      const u = await exchange(Number(new URL(gw.url).port), upgradeHead, [
        { expect: 1, write: Buffer.alloc(700, 0x75) },
        { expect: 700 },
      ]);
      add(web, u);
      // A CONNECT tunnel: 1000 bytes each way.
      add(
        tunnel,
        await exchange(Number(new URL(gw.url).port), `CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`, [
          { expect: ESTABLISHED.length, write: Buffer.alloc(1000, 0x63) },
          { expect: 1000 },
        ]),
      );
    });
    after(async () => {
      await gw.close();
      await up.close();
      echo.close();
    });

    test('connections per listener: accepted, closed, open, durations', async () => {
      const s = await until(async () => {
        const m = await scrape();
        return total(m, 'manifold_connections_closed_total', { listener: 'default' }) === connections ? m : null;
      }, 'every connection counted closed');
      assert.equal(total(s, 'manifold_connections_accepted_total', { listener: 'default' }), connections);
      assert.equal(total(s, 'manifold_connections_open', { listener: 'default' }), 0);
      assert.equal(total(s, 'manifold_connection_duration_seconds_count', { listener: 'default' }), connections);
    });

    test('tunnels per route and kind', async () => {
      const s = await until(async () => {
        const m = await scrape();
        return total(m, 'manifold_tunnels_closed_total') === 2 ? m : null;
      }, 'both tunnels counted closed');
      assert.equal(total(s, 'manifold_tunnels_opened_total', { route: 'tunnel', kind: 'connect' }), 1);
      assert.equal(total(s, 'manifold_tunnels_opened_total', { route: 'web', kind: 'upgrade' }), 1);
      assert.equal(total(s, 'manifold_tunnels_closed_total', { route: 'tunnel', kind: 'connect' }), 1);
      assert.equal(total(s, 'manifold_tunnels_open'), 0);
      assert.equal(total(s, 'manifold_tunnel_duration_seconds_count', { route: 'web', kind: 'upgrade' }), 1);
      assert.equal(
        total(s, 'manifold_downstream_requests_total', { route: 'tunnel', method: 'CONNECT', status_class: '2xx' }),
        1,
      );
    });

    test('bytes per route, target and direction: exactly what the clients sent and received', async () => {
      const target = new URL(up.url).host;
      const s = await until(async () => {
        const m = await scrape();
        return total(m, 'manifold_bytes_total', { route: 'tunnel', direction: 'out' }) === tunnel.received ? m : null;
      }, 'the tunnel bytes');
      assert.equal(total(s, 'manifold_bytes_total', { route: 'web', target, direction: 'in' }), web.sent);
      assert.equal(total(s, 'manifold_bytes_total', { route: 'web', target, direction: 'out' }), web.received);
      assert.equal(total(s, 'manifold_bytes_total', { route: 'tunnel', target: '_direct', direction: 'in' }), tunnel.sent);
      assert.equal(total(s, 'manifold_bytes_total', { route: 'tunnel', target: '_direct', direction: 'out' }), tunnel.received);
      // Nothing else moved on the data port.
      assert.equal(total(s, 'manifold_bytes_total', { direction: 'in' }), web.sent + tunnel.sent);
    });

    test('/dashboard/data has the same live totals', async () => {
      const r = await gw.admin('GET', '/dashboard/data', undefined, AUTH);
      assert.equal(r.status, 200);
      assert.deepEqual(r.json().live, {
        sessions: connections,
        open: 0,
        bytes_in: web.sent + tunnel.sent,
        bytes_out: web.received + tunnel.received,
      });
    });
  });
}

describe('--stats-interval prints the live line (issue 17)', { timeout: 60_000 }, () => {
  const dir = scratch('manifold-live-');
  let up: Upstream;
  before(async () => {
    up = await startUpstream((_req, res) => res.end('ok'));
  });
  after(() => up.close());

  test('with --workers 2, every worker summed', async () => {
    const file = dir.configFile(`
admin: { enabled: false }
log: { level: warn }
pools:
  web: { targets: [${up.url}] }
routes:
  - { id: web, match: { path: /* }, proxy: { pool: web } }
`);
    const cli = spawnCli(['--config', file, '--workers', '2', '--host', '127.0.0.1', '--port', '0', '--log-level', 'info', '--stats-interval', '200ms']);
    try {
      const port = await cliPort(cli);
      const counted: Counted = { sent: 0, received: 0 };
      for (let i = 0; i < 4; i++) {
        const c = await exchange(port, `GET /${i} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`);
        counted.sent += c.sent;
        counted.received += c.received;
      }
      const line = await until(
        () =>
          cli.logs().find((l) => {
            const live = l.live as Record<string, number> | undefined;
            return live?.sessions_total === 4 && live.bytes_out === counted.received;
          }),
        'a live line with the four sessions',
        20_000,
      );
      const live = line.live as Record<string, number>;
      assert.equal(live.sessions_current, 0);
      assert.equal(live.bytes_in, counted.sent);
      assert.match(
        String(line.msg),
        /^[\d.]+ sessions\/s, 4 total, 0 current, in \d+ B \([\d.]+ KB\/s\), out \d+ B \([\d.]+ KB\/s\)$/,
      );
      // Lines keep coming, one per interval.
      const before = cli.logs().filter((l) => l.live !== undefined).length;
      await until(() => cli.logs().filter((l) => l.live !== undefined).length >= before + 2, 'two more lines');
    } finally {
      cli.kill();
      await cli.exited;
    }
  });

  test('a bad duration is a usage error', async () => {
    const file = dir.configFile('routes: []\n');
    const cli = spawnCli(['--config', file, '--stats-interval', 'soon']);
    assert.equal(await cli.exited, 2);
    assert.match(cli.stderr, /--stats-interval: not a duration: "soon"/);
  });
});
