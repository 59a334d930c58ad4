/**
 * Issue 7 in a real browser: the real CLI with a token, two targets under steady traffic and a
 * defer route whose only target always answers 500. Headless Debian Chromium signs in through
 * the form, reads live numbers, drains and enables a target (checked at the upstreams too),
 * replays a dead letter, and takes the README's screenshot (written to docs/dashboard.png with
 * UPDATE_SCREENSHOT=1). Issue 16: two gateways on one cluster store, the Cluster panel and the
 * scope selector. Skipped (with a message) where /usr/bin/chromium is missing; .ci/run
 * installs it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { ROOT, startUpstream, until } from '../helpers/index.ts';
import { startManaged } from '../integration/admin-gateway.ts';
import { send } from '../helpers/http.ts';
import { dropSchema, newSchemaName, PG_URL } from '../helpers/pg.ts';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'secret';
/** The traffic loop stops by itself after this many requests, whatever happens to the test. */
const MAX_REQUESTS = 50_000;

test(
  'dashboard: sign in, live numbers, drain and enable, replay (issue 7)',
  { timeout: 120_000 },
  async (t) => {
    if (!existsSync(CHROMIUM)) {
      t.skip(
        `${CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser test`,
      );
      return;
    }
    const a = await startUpstream((_req, res) => res.end('a'));
    t.after(() => a.close());
    const b = await startUpstream((_req, res) => res.end('b'));
    t.after(() => b.close());
    const dead = await startUpstream((req, res) => {
      req.resume();
      req.on('end', () => {
        res.statusCode = 500;
        res.end('always failing');
      });
    });
    t.after(() => dead.close());

    const dir = mkdtempSync(join(tmpdir(), 'manifold-dashboard-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    // The real CLI in one process; startManaged binds both ports to 127.0.0.1:0.
    const gw = await startManaged(
      `
admin: { port: 0, token: ${TOKEN} }
log: { level: info, access: false }
queue: { driver: sqlite, path: ${join(dir, 'queue.db')} }
pools:
  api: { targets: [${a.url}, ${b.url}], selector: round-robin }
  hooks: { targets: [${dead.url}] }
routes:
  - id: hooks
    match: { path: /hooks/* }
    defer: { pool: hooks, max_attempts: 1 }
  - id: api
    match: { path: /* }
    proxy: { pool: api }
`,
      0,
    );
    t.after(() => gw.close());
    const gateway = gw.url;
    const admin = gw.adminUrl;

    // Steady traffic, one request at a time, until the test ends (or the bound).
    let stopped = false;
    let sent = 0;
    const traffic = (async () => {
      while (!stopped && sent < MAX_REQUESTS) {
        sent++;
        await send(`${gateway}/item/${sent}`).catch(() => {});
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    t.after(async () => {
      stopped = true;
      await traffic;
    });
    // One job that will fail its only attempt: a dead letter for the queue section.
    const accepted = await send(`${gateway}/hooks/push`, { method: 'POST', body: '{"event":"push"}' });
    assert.equal(accepted.status, 202, accepted.text);

    const browser: Browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    t.after(() => browser.close());
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, colorScheme: 'dark' });
    const page: Page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });

    const text = (selector: string) => page.locator(selector).textContent({ timeout: 2000 });
    const attr = (selector: string, name: string) =>
      page.locator(selector).getAttribute(name, { timeout: 2000 });
    const num = (s: string | null) => Number((s ?? '').replace(/,/g, ''));
    const rowA = `tr[data-target="127.0.0.1:${a.port}"]`;
    const rowB = `tr[data-target="127.0.0.1:${b.port}"]`;
    const route = 'tr[data-route="api"]';
    const deadRow = '#queue tr[data-route="hooks"]';

    await t.test('the page asks for the token, and the form signs in', async () => {
      const first = await page.goto(`${admin}/dashboard`);
      assert.equal(first?.status(), 401);
      await page.fill('#token', 'wrong');
      await Promise.all([page.waitForURL(`${admin}/dashboard/login`), page.click('button[type="submit"]')]);
      assert.match((await text('.login-error')) ?? '', /not valid/);
      await page.fill('#token', TOKEN);
      await Promise.all([page.waitForURL(`${admin}/dashboard`), page.click('button[type="submit"]')]);
      await until(async () => (await attr('#status', 'data-status')) === 'ok', 'the page to go live');
      const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
      assert.equal(await text('#version'), version);
    });

    await t.test('route numbers are live: a rate above 0, totals that move', async () => {
      const rate = await until(async () => {
        const r = num(await text(`${route} [data-col="rate"]`));
        return r > 0 ? r : null;
      }, 'a request rate above 0');
      assert.ok(Number.isFinite(rate));
      assert.match((await text(`${route} [data-col="p50"]`)) ?? '', /^\d[\d.,]* ms$/);
      assert.match((await text(`${route} [data-col="error-rate"]`)) ?? '', /^0\.0 %$/);
      const total = num(await text(`${route} [data-col="requests"]`));
      await until(async () => num(await text(`${route} [data-col="requests"]`)) > total, 'the total to grow');
      for (const row of [rowA, rowB]) {
        await until(async () => (await attr(row, 'data-state')) === 'up', `${row} up`);
        assert.equal(await text(`${row} button`), 'Drain');
      }
    });

    await t.test('the Connections panel is live: sessions/s, open sessions, KB/s each way (issue 17)', async () => {
      // The traffic loop opens a connection per request (agent: false): sessions come and go.
      await until(async () => num(await text('#live-rate')) > 0, 'sessions per second above 0');
      await until(async () => num(await text('#live-in')) > 0 && num(await text('#live-out')) > 0, 'KB/s both ways');
      assert.match((await text('#live-open')) ?? '', /^\d[\d,]*$/);
      const sessions = num(await text('#live-total'));
      await until(async () => num(await text('#live-total')) > sessions, 'the session total to grow');
    });

    /**
     * Waits until `quiet` saw no request while `busy` saw `n`, restarting the count whenever
     * `quiet` sees one (a request already on its way when the change landed).
     */
    const starves = (quiet: typeof a, busy: typeof b, n: number, what: string) => {
      let q = quiet.requests.length;
      let from = busy.requests.length;
      return until(
        () => {
          if (quiet.requests.length !== q) {
            q = quiet.requests.length;
            from = busy.requests.length;
          }
          return busy.requests.length - from >= n;
        },
        what,
        20_000,
      );
    };

    await t.test('Drain stops new traffic to a target; the page shows it drained', async () => {
      await page.click(`${rowA} button`);
      await until(async () => (await attr(rowA, 'data-drain')) === 'true', 'target A shown drained');
      assert.equal(await page.locator(`${rowA} .badge.drained`).isVisible(), true);
      await until(async () => (await text(`${rowA} button`)) === 'Enable', 'an Enable button');
      await starves(a, b, 30, 'B to take 30 requests while A takes none');
      await until(
        async () => num(await text(`${rowA} [data-col="rate"]`)) === 0,
        'A at 0 req/s on the page',
        20_000,
      );
      assert.equal(await page.locator(`${rowB} .badge.drained`).isVisible(), false);

      // The screenshot: traffic on B only, A drained, a dead letter waiting.
      await until(async () => num(await text(`${deadRow} [data-col="dead"]`)) === 1, 'the dead letter shown');
      await until(() => page.locator('#toast').isHidden(), 'the toast to go');
      // Taken on every run and checked; it replaces the README's only when asked, so that a
      // test run leaves the work tree clean: UPDATE_SCREENSHOT=1 npm test (or this file).
      const shot = await page.screenshot({ path: join(dir, 'dashboard.png'), fullPage: true });
      assert.equal(shot.subarray(1, 4).toString('latin1'), 'PNG');
      assert.ok(shot.length > 10_000, `a real picture (${shot.length} bytes)`);
      if (process.env.UPDATE_SCREENSHOT === '1') {
        mkdirSync(join(ROOT, 'docs'), { recursive: true });
        writeFileSync(join(ROOT, 'docs', 'dashboard.png'), shot);
      }
    });

    await t.test('Enable gives the target traffic again', async () => {
      await page.click(`${rowA} button`);
      await until(async () => (await attr(rowA, 'data-drain')) === 'false', 'target A shown enabled');
      await until(async () => (await text(`${rowA} button`)) === 'Drain', 'a Drain button again');
      const seen = a.requests.length;
      await until(() => a.requests.length >= seen + 10, 'A to get traffic again');
      await until(
        async () => num(await text(`${rowA} [data-col="rate"]`)) > 0,
        'A above 0 req/s on the page',
      );
    });

    await t.test('Replay sends the dead letter again', async () => {
      assert.equal(dead.requests.length, 1, 'one delivery attempt so far');
      await until(async () => (await text(`${deadRow} button`)) === 'Replay 1', 'a Replay 1 button');
      await page.click(`${deadRow} button`);
      await until(() => dead.requests.length === 2, 'the target to see the job again');
      await until(
        async () => /hooks: 1 dead letter queued again/.test((await text('#toast')) ?? ''),
        'the toast',
      );
      // It fails again (max_attempts: 1): back among the dead letters, no more attempts.
      await until(
        async () => num(await text(`${deadRow} [data-col="dead"]`)) === 1 && dead.requests.length === 2,
        'dead again',
      );
    });

    await t.test('no script error or CSP violation on the way', () => {
      assert.deepEqual(problems, []);
    });
  },
);

test('dashboard: the Cluster panel and the cluster scope (issue 16)', { timeout: 120_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium) to run the browser test`);
    return;
  }
  const schema = newSchemaName('dash');
  const target = await startUpstream((_req, res) => res.end('t'));
  const yaml = `
log: { level: info, access: false }
cluster: { store: postgres, url: "${PG_URL}", schema: ${schema}, heartbeat: 200ms, gone_after: 2s }
pools: { api: { targets: [${target.url}] } }
routes:
  - id: api
    match: { path: /* }
    proxy: { pool: api }
`;
  const [gwA, gwB] = await Promise.all([startManaged(yaml, 0), startManaged(yaml, 0)]);
  t.after(async () => {
    await Promise.all([gwA.close(), gwB.close()]);
    await target.close();
    await dropSchema(schema);
  });
  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  t.after(() => browser.close());
  const page: Page = await (await browser.newContext()).newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  const text = (selector: string) => page.locator(selector).textContent({ timeout: 2000 });
  const num = (s: string | null) => Number((s ?? '').replace(/,/g, ''));
  // Traffic through B only: A's own numbers stay at 0, the cluster's do not.
  for (let i = 0; i < 7; i++) assert.equal((await gwB.get(`/x/${i}`)).status, 200);

  await page.goto(`${gwA.adminUrl}/dashboard`);
  await until(() => page.locator('#cluster-panel').isVisible(), 'the Cluster panel');
  await until(async () => (await page.locator('#cluster tbody tr').count()) === 2, 'two gateways listed');
  assert.deepEqual(await page.locator('#cluster tbody .badge').allTextContents(), ['up', 'up']);
  assert.equal(await page.locator('#cluster tbody tr', { hasText: '(this one)' }).count(), 1);

  const requests = 'tr[data-route="api"] [data-col="requests"]';
  await until(async () => (await text(requests)) === '0', "A's own total: 0");
  assert.equal(await page.locator('#scope-box').isVisible(), true);
  await page.selectOption('#scope', 'cluster');
  await until(async () => num(await text(requests)) === 7, "the cluster's total: B's 7");
  await page.selectOption('#scope', 'instance');
  await until(async () => (await text(requests)) === '0', "back to A's own");
  assert.deepEqual(problems, []);
});
