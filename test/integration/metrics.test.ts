/**
 * Issue 7: `/metrics` after known traffic, in one process and with `--workers 2` (the Manager
 * sums every worker's and the primary's). Each kind of traffic — proxied answers, 5xx, no
 * route, an unknown method, hedges, a multiplex batch, a deferred request that dead-letters —
 * is sent a known number of times and the scrape must count exactly that. Labels are config
 * ids only: a raw path sent never shows up in the exposition.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { deadAddress, startUpstream, type Upstream, until } from '../helpers/index.ts';
import { send } from '../helpers/http.ts';
import { has, parseExposition, type Sample, total } from '../helpers/prom.ts';
import { MODES, type ManagedGateway, startManaged } from './admin-gateway.ts';

const AUTH = { authorization: 'Bearer s3cret' };

for (const mode of MODES) {
  describe(`metrics after known traffic (${mode.name})`, { timeout: 90_000 }, () => {
    let a: Upstream;
    let b: Upstream;
    let broken: Upstream;
    let slow: Upstream;
    let sink: Upstream;
    let dead: string;
    let dir: string;
    let gw: ManagedGateway;
    let scrape: () => Promise<Sample[]>;
    let metricsPort: number;

    before(async () => {
      a = await startUpstream((_req, res) => res.end('a'));
      b = await startUpstream((_req, res) => res.end('b'));
      broken = await startUpstream((_req, res) => {
        res.statusCode = 503;
        res.end('down');
      });
      // Answers after 300 ms: the hedge to `a` launched 20 ms in wins.
      slow = await startUpstream((_req, res) => {
        setTimeout(() => res.end('slow'), 300);
      });
      sink = await startUpstream((_req, res) => {
        res.statusCode = 500;
        res.end('no');
      });
      dead = await deadAddress();
      dir = mkdtempSync(join(tmpdir(), 'manifold-metrics-'));
      gw = await startManaged(
        `
log: { level: warn, access: false }
admin: { token: s3cret }
metrics: { port: 0 }
queue: { path: ${join(dir, 'queue.db')} }
pools:
  web: { targets: [${a.url}, ${b.url}] }
  bad: { targets: [${broken.url}] }
  hedged: { targets: [${slow.url}, ${a.url}] }
  sink: { targets: [${sink.url}] }
routes:
  - { id: api, match: { path: /api/* }, proxy: { pool: web } }
  - { id: fail, match: { path: /fail }, proxy: { pool: bad } }
  - id: hedge
    match: { path: /hedge }
    proxy: { pool: hedged, strategy: hedge, hedge_after: 20ms, order: listed, hedge_budget: 1 }
  - { id: batch, match: { path: /multiplex, methods: [POST] }, multiplex: { allow: [127.0.0.0/8] } }
  - { id: hooks, match: { path: /hooks/* }, defer: { pool: sink, max_attempts: 1 } }
`,
        mode.workers,
      );
      const line = await until(
        () => gw.cli.logs().find((l) => l.msg === 'metrics listening'),
        'metrics port',
      );
      metricsPort = line.port as number;
      scrape = async () => {
        const r = await gw.admin('GET', '/metrics', undefined, AUTH);
        assert.equal(r.status, 200, r.text);
        return parseExposition(r.text);
      };

      for (let i = 0; i < 10; i++) assert.equal((await gw.get(`/api/secret-path-${i}`)).status, 200);
      for (let i = 0; i < 3; i++)
        assert.equal((await send(`${gw.url}/fail`, { method: 'POST', body: 'x' })).status, 503);
      for (let i = 0; i < 2; i++) assert.equal((await gw.get('/nowhere-at-all')).status, 404);
      assert.equal((await send(`${gw.url}/api/x`, { method: 'PURGE' })).status, 200);
      assert.equal((await gw.get('/hedge')).text, 'a');
      const batch = await send(`${gw.url}/multiplex`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          requests: [{ uri: `${a.url}/one` }, { uri: `${broken.url}/two` }, { uri: `${dead}/three` }],
        }),
      });
      assert.equal(batch.status, 200, batch.text);
      assert.equal((await send(`${gw.url}/hooks/x`, { method: 'POST', body: '{}' })).status, 202);
    });

    after(async () => {
      await gw.close();
      await Promise.all([a.close(), b.close(), broken.close(), slow.close(), sink.close()]);
      rmSync(dir, { recursive: true, force: true });
    });

    test('downstream answers by route, method and status class, with a duration histogram', async () => {
      const s = await scrape();
      const req = 'manifold_downstream_requests_total';
      assert.equal(total(s, req, { route: 'api', method: 'GET', status_class: '2xx' }), 10);
      assert.equal(
        total(s, req, { route: 'api', method: '_other', status_class: '2xx' }),
        1,
        'PURGE → _other',
      );
      assert.equal(total(s, req, { route: 'fail', method: 'POST', status_class: '5xx' }), 3);
      assert.equal(total(s, req, { route: '_none', method: 'GET', status_class: '4xx' }), 2);
      assert.equal(total(s, req, { route: 'hooks', status_class: '2xx' }), 1);
      const hist = 'manifold_downstream_request_duration_seconds';
      assert.equal(total(s, `${hist}_count`, { route: 'api' }), 11);
      assert.equal(total(s, `${hist}_bucket`, { route: 'api', le: '+Inf' }), 11);
      assert.ok(total(s, `${hist}_sum`, { route: 'api' }) > 0);
      // A bucket never counts more than the next one up.
      const buckets = s.filter((x) => x.name === `${hist}_bucket` && x.labels.route === 'api');
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i - 1].value <= buckets[i].value);
      assert.equal(total(s, 'manifold_downstream_inflight'), 0);
    });

    test('attempts by route, pool, target and outcome; hedges fired and won', async () => {
      const s = await scrape();
      const att = 'manifold_attempts_total';
      const aId = a.url.slice('http://'.length);
      const bId = b.url.slice('http://'.length);
      assert.equal(total(s, att, { route: 'api', pool: 'web' }), 11);
      assert.equal(
        total(s, att, { route: 'api', pool: 'web', target: aId }) +
          total(s, att, { route: 'api', pool: 'web', target: bId }),
        11,
      );
      if (mode.workers === 0) {
        // One round-robin: 11 picks alternate.
        assert.ok(
          Math.abs(
            total(s, att, { route: 'api', target: aId }) - total(s, att, { route: 'api', target: bId }),
          ) <= 1,
        );
      }
      assert.equal(total(s, att, { route: 'fail', pool: 'bad' }), 3);
      assert.equal(total(s, 'manifold_attempt_duration_seconds_count', { route: 'api' }), 11);
      // The hedge: the slow target's attempt lost (cancelled), the hedge to `a` was accepted.
      assert.equal(total(s, att, { route: 'hedge', target: aId, outcome: 'accepted' }), 1);
      assert.equal(total(s, att, { route: 'hedge', target: slow.url.slice(7), outcome: 'cancelled' }), 1);
      assert.equal(total(s, 'manifold_hedges_fired_total', { route: 'hedge' }), 1);
      assert.equal(total(s, 'manifold_hedges_won_total', { route: 'hedge' }), 1);
    });

    test('targets, pools and the control plane', async () => {
      const s = await scrape();
      const aId = a.url.slice('http://'.length);
      assert.equal(total(s, 'manifold_target_up', { pool: 'web', target: aId }), 1);
      assert.equal(total(s, 'manifold_target_drained', { pool: 'web', target: aId }), 0);
      assert.equal(total(s, 'manifold_target_inflight', { pool: 'web', target: aId }), 0);
      assert.equal(total(s, 'manifold_target_ejected', { pool: 'web', target: aId }), 0);
      assert.ok(has(s, 'manifold_target_ejections_total', { pool: 'web', target: aId }));
      assert.equal(total(s, 'manifold_pool_targets', { pool: 'web' }), 2);
      assert.equal(total(s, 'manifold_pool_targets', { pool: 'hedged' }), 2);
      assert.equal(total(s, 'manifold_workers'), mode.workers === 0 ? 1 : mode.workers);
      assert.ok(total(s, 'manifold_config_version') >= 1);
      assert.equal(total(s, 'manifold_build_info'), 1, 'one build_info however many processes');
      assert.ok(has(s, 'process_cpu_user_seconds_total'), 'process metrics');
      assert.ok(has(s, 'nodejs_eventloop_lag_seconds'));
    });

    test('multiplex batch sizes and item outcomes', async () => {
      const s = await scrape();
      assert.equal(total(s, 'manifold_multiplex_batch_size_count', { route: 'batch' }), 1);
      assert.equal(total(s, 'manifold_multiplex_batch_size_sum', { route: 'batch' }), 3);
      assert.equal(total(s, 'manifold_multiplex_items_total', { route: 'batch', outcome: '2xx' }), 1);
      assert.equal(total(s, 'manifold_multiplex_items_total', { route: 'batch', outcome: '5xx' }), 1);
      assert.equal(total(s, 'manifold_multiplex_items_total', { route: 'batch', outcome: 'CONNECT' }), 1);
    });

    test('defer: accepts, accept latency, delivery outcomes, dead letters and queue depth', async () => {
      // Delivery happens after the 202: wait for the dead letter, then check every count.
      const s = await until(async () => {
        const x = await scrape();
        return total(x, 'manifold_queue_jobs', { route: 'hooks', state: 'dead' }) === 1 ? x : null;
      }, 'the dead letter to show in the queue depth');
      assert.equal(total(s, 'manifold_queue_accepted_total', { route: 'hooks', mode: 'queued' }), 1);
      assert.equal(total(s, 'manifold_queue_accept_duration_seconds_count', { route: 'hooks' }), 1);
      assert.equal(total(s, 'manifold_delivery_attempts_total', { route: 'hooks', outcome: 'dead' }), 1);
      assert.equal(total(s, 'manifold_delivery_attempts_total', { route: 'hooks', outcome: 'delivered' }), 0);
      assert.equal(total(s, 'manifold_delivery_duration_seconds_count', { route: 'hooks' }), 1);
      assert.equal(total(s, 'manifold_queue_dead_letters_total', { route: 'hooks' }), 1);
      assert.equal(total(s, 'manifold_queue_jobs', { route: 'hooks', state: 'pending' }), 0);
    });

    test('labels are config ids only: no raw path or host in the exposition', async () => {
      const r = await gw.admin('GET', '/metrics', undefined, AUTH);
      assert.ok(!r.text.includes('secret-path'), 'a request path leaked into a label');
      assert.ok(!r.text.includes('nowhere-at-all'));
      const labels = new Set(parseExposition(r.text).flatMap((x) => Object.keys(x.labels)));
      for (const l of labels) assert.ok(!['path', 'url', 'host'].includes(l), `label ${l}`);
      assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    });

    test('the admin port asks for the token; metrics.port does not, and serves only GET <path>', async () => {
      assert.equal((await gw.admin('GET', '/metrics')).status, 401);
      const own = `http://127.0.0.1:${metricsPort}`;
      const r = await send(`${own}/metrics`);
      assert.equal(r.status, 200);
      assert.equal(
        total(parseExposition(r.text), 'manifold_downstream_requests_total', { route: 'fail' }),
        3,
      );
      const missing = await send(`${own}/pools`);
      assert.equal(missing.status, 404);
      assert.equal(missing.json<{ error: { code: string } }>().error.code, 'NOT_FOUND');
      const post = await send(`${own}/metrics`, { method: 'POST', body: 'x' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.allow, 'GET, HEAD');
    });
  });
}

describe('metrics config', () => {
  test('metrics.enabled: false: no /metrics, and the gateway serves as before', async () => {
    const a = await startUpstream((_req, res) => res.end('a'));
    const gw = await startManaged(
      `
log: { level: warn, access: false }
metrics: { enabled: false }
pools: { web: { targets: [${a.url}] } }
routes: [{ match: { path: /* }, proxy: { pool: web } }]
`,
      0,
    );
    try {
      assert.equal((await gw.get('/x')).text, 'a');
      const r = await gw.admin('GET', '/metrics');
      assert.equal(r.status, 404);
      assert.equal(r.json<{ error: { code: string } }>().error.code, 'NOT_FOUND');
    } finally {
      await gw.close();
      await a.close();
    }
  });
});
