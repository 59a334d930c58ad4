/**
 * Issue 3: active health checks (run once per target by the primary: `fall` failures mark a
 * target down, `rise` passes bring it back) and passive ejection from real traffic (resets
 * and 5xx), in one process and with `--workers 2`.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startUpstream, type Upstream, until } from '../helpers/index.ts';
import { MODES, type ManagedGateway, spread, startManaged } from './admin-gateway.ts';

interface TargetView {
  id: string;
  state: string;
  failures: number;
  ejected_workers: number;
}

async function targetState(gw: ManagedGateway, id: string): Promise<TargetView> {
  const r = await gw.admin('GET', '/stats/detail');
  return r.json<TargetView[]>().find((t) => t.id === id)!;
}

/** A target we can kill and bring back on the same port; `/health` answers `healthy`. */
class Flaky {
  healthy = true;
  checks: Array<{ at: number; ok: boolean }> = [];
  port = 0;
  #server: Server | null = null;
  #sockets = new Set<Socket>();

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      if (req.url === '/health') {
        this.checks.push({ at: Date.now(), ok: this.healthy });
        res.statusCode = this.healthy ? 200 : 503;
      }
      res.end('flaky');
    });
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  async kill(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((r) => this.#server?.close(r));
    this.#server = null;
  }
}

for (const mode of MODES) {
  describe(`active health checks (${mode.name})`, () => {
    let steady: Upstream;
    const flaky = new Flaky();
    let gw: ManagedGateway;
    const id = () => `127.0.0.1:${flaky.port}`;
    before(async () => {
      steady = await startUpstream((_req, res) => res.end('steady'));
      await flaky.start();
      gw = await startManaged(
        `
log: { level: info, access: false }
pools:
  default:
    targets: [${steady.url}, ${flaky.url}]
    health: { path: /health, interval: 100ms, timeout: 500ms, fall: 3, rise: 2 }
routes:
  - { match: { path: /* }, proxy: { pool: default } }
`,
        mode.workers,
      );
    });
    after(async () => {
      await gw.close();
      await steady.close();
      await flaky.kill();
    });

    test('checks run once per target, not once per worker', async () => {
      const from = flaky.checks.length;
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 1000));
      const n = flaky.checks.length - from;
      // One checker at 100 ms plus the time a check takes: at most ~10 a second (twice that if
      // each worker checked).
      assert.ok(n >= 5 && n <= 12, `${n} checks in ${Date.now() - t0} ms`);
    });

    test('marked down after `fall` failed checks, up again after `rise` passed ones', async () => {
      assert.equal((await targetState(gw, id())).state, 'up');
      flaky.healthy = false;
      const failingFrom = flaky.checks.length;
      await until(async () => (await targetState(gw, id())).state === 'down', 'down', 5000);
      const failed = flaky.checks.slice(failingFrom).filter((c) => !c.ok).length;
      assert.ok(failed >= 3, `down after ${failed} failed checks`);
      assert.deepEqual(await spread(gw, 10), { steady: 10 });
      flaky.healthy = true;
      const passingFrom = flaky.checks.length;
      await until(async () => (await targetState(gw, id())).state === 'up', 'up', 5000);
      const passed = flaky.checks.slice(passingFrom).filter((c) => c.ok).length;
      assert.ok(passed >= 2, `up after ${passed} passed checks`);
      await until(async () => (await spread(gw, 10)).flaky > 0, 'traffic on the target again');
    });

    test('a killed target goes down; restarted on its port, it comes back', async () => {
      await flaky.kill();
      await until(async () => (await targetState(gw, id())).state === 'down', 'down', 5000);
      assert.deepEqual(await spread(gw, 10), { steady: 10 });
      await flaky.start();
      await until(async () => (await targetState(gw, id())).state === 'up', 'up', 5000);
      await until(async () => (await spread(gw, 10)).flaky > 0, 'traffic on the target again');
    });
  });

  describe(`passive ejection (${mode.name})`, () => {
    let good: Upstream;
    let resets: Upstream;
    let errors: Upstream;
    let gw: ManagedGateway;
    before(async () => {
      good = await startUpstream((_req, res) => res.end('good'));
      // Accepts the request, then resets the connection without answering.
      resets = await startUpstream((req) => req.socket.resetAndDestroy());
      errors = await startUpstream((_req, res) => {
        res.statusCode = 500;
        res.end('boom');
      });
      gw = await startManaged(
        `
log: { level: info, access: false }
pools:
  resets:
    targets: [${good.url}, ${resets.url}]
    passive: { failures: 2, ejection: 30s }
  errors:
    targets: [${good.url}, ${errors.url}]
    passive: { failures: 2, ejection: 30s }
routes:
  - { match: { path: /resets }, proxy: { pool: resets } }
  - { match: { path: /errors }, proxy: { pool: errors } }
`,
        mode.workers,
      );
    });
    after(async () => {
      await gw.close();
      await Promise.all([good.close(), resets.close(), errors.close()]);
    });

    for (const [path, up] of [
      ['/resets', () => resets],
      ['/errors', () => errors],
    ] as const) {
      test(`a target failing with ${path.slice(1)} is ejected; traffic goes to the others`, async () => {
        // Each worker ejects for itself, so keep sending until a run of answers is all good.
        let run = 0;
        await until(
          async () => {
            const r = await gw.get(path);
            run = r.status === 200 && r.text === 'good' ? run + 1 : 0;
            return run >= 20;
          },
          'twenty good answers in a row',
          10_000,
        );
        const t = await targetState(gw, `127.0.0.1:${up().port}`);
        assert.equal(t.state, 'ejected');
        assert.ok(t.ejected_workers >= 1 && t.failures >= 2, JSON.stringify(t));
      });
    }
  });
}
