/**
 * Issue 15, item 5: hedging over a round-robin pool moved the shared cursor twice per hedged
 * request (once for the first attempt, once for the hedge pick, even one the budget denied),
 * so every first attempt went to the same, slow, target. Counted at the upstreams and by which
 * target answered; no wall-clock thresholds.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Gateway, startGateway, startUpstream, type Upstream } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';

const N = 10;

describe('issue 15: hedge over round-robin', { timeout: 90_000 }, () => {
  let slow: Upstream;
  let fast: Upstream;
  let gw: Gateway;
  before(async () => {
    // Slow answers long after any hedge has fired (the hedge aborts it first).
    slow = await startUpstream((_req, res) => {
      const timer = setTimeout(() => res.end('slow'), 1000);
      res.on('close', () => clearTimeout(timer));
    });
    fast = await startUpstream((_req, res) => res.end('fast'));
    const targets = `[${slow.url}, ${fast.url}]`;
    gw = await startGateway(`
log: { level: warn, access: false }
pools:
  every: { targets: ${targets}, selector: round-robin }
  budget: { targets: ${targets}, selector: round-robin }
  single: { targets: ${targets}, selector: round-robin }
routes:
  - { match: { path: /every }, proxy: { pool: every, strategy: hedge, hedge_after: 200ms, hedge_budget: 1 } }
  - { match: { path: /budget }, proxy: { pool: budget, strategy: hedge, hedge_after: 200ms } }
  - { match: { path: /single }, proxy: { pool: single } }
`);
  });
  after(async () => {
    await gw.close();
    await Promise.all([slow.close(), fast.close()]);
  });

  async function run(path: string) {
    const s0 = slow.requests.length;
    const f0 = fast.requests.length;
    const answers: Record<string, number> = {};
    for (let i = 0; i < N; i++) {
      const r = await send(`${gw.url}${path}`);
      assert.equal(r.status, 200, r.text);
      answers[r.text] = (answers[r.text] ?? 0) + 1;
    }
    return { slow: slow.requests.length - s0, fast: fast.requests.length - f0, answers };
  }

  test('every request hedged: first attempts alternate, the fast target answers all', async () => {
    const seen = await run('/every');
    // First attempts split 5/5; each of the 5 on slow is hedged to fast.
    assert.equal(seen.slow, N / 2, JSON.stringify(seen));
    assert.equal(seen.fast, N, JSON.stringify(seen));
    assert.deepEqual(seen.answers, { fast: N });
  });

  test('hedges denied by the default budget do not move the cursor: first attempts still split evenly', async () => {
    const seen = await run('/budget');
    assert.equal(seen.slow, N / 2, JSON.stringify(seen));
    assert.ok(seen.fast >= N / 2, JSON.stringify(seen));
    assert.ok((seen.answers.fast ?? 0) >= N / 2, JSON.stringify(seen));
  });

  test('hedging beats single: fewer answers from the slow target than single gives', async () => {
    const single = await run('/single');
    assert.deepEqual(single.answers, { slow: N / 2, fast: N / 2 });
    const hedged = await run('/every');
    // The median request is answered by fast under hedge; by slow half the time under single.
    assert.ok((hedged.answers.slow ?? 0) < (single.answers.slow ?? 0), JSON.stringify({ single, hedged }));
  });
});
