/**
 * The defer suite (issue 6): how fast one Manifold process (`--workers 1`, one core) accepts
 * requests with a durable commit, and how fast it delivers them, for each store, in one run.
 *
 * 1. accept: POSTs of a ~450-byte JSON body to a defer route whose deliveries are held back
 *    (`rate: 1/h`), so only accepting is measured: each answer is a 202 sent after the job was
 *    committed (SQLite: WAL + synchronous=FULL, one fsync per group commit; PostgreSQL: one
 *    multi-row INSERT per group). Interleaved rounds, medians, as in the proxy suite.
 * 2. drain: the same store with deliveries on (`concurrency: 64`, no rate): jobs delivered per
 *    second from the backlog the accept phase left, counted at the receiving target.
 * 3. end to end: a fresh store, accepting and delivering at once: accepted/s during the load
 *    and delivered/s from the first request to the last delivery.
 *
 * PostgreSQL is the local one (MANIFOLD_BENCH_PG_URL, default the test database), each run in
 * its own schema, dropped at the end; it is skipped, saying why, when it cannot be reached.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import pg from 'pg';
import {
  Child,
  freePort,
  httpGet,
  stopAll,
  waitReady,
  inTempDir,
} from '../lib/processes.ts';
import { fmtFixed, fmtInt, median, round, table, loadAverages, log, machineLine } from '../lib/report.ts';
import type { BenchOptions, Suite } from '../lib/suite.ts';
import { REPO } from '../lib/contestants.ts';

const PG_URL = process.env.MANIFOLD_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BODY = JSON.stringify({ event: 'push', repository: 'manifold', payload: 'x'.repeat(400) });
/** The DESIGN/issue target: durable accepts per second on one core, with SQLite. */
const TARGET_ACCEPTS = 5000;
const SETTLE_MS = 300;

interface Store {
  id: 'sqlite' | 'postgres';
  /** The `queue:` value for store number `n` of this run. */
  queue(n: number): string;
}

interface AcceptMeasurement {
  rps: number;
  p50: number;
  p99: number;
  accepted: number;
  problems: string[];
}

function manifoldYaml(port: number, receiver: string, queue: string, deliver: boolean): string {
  return [
    '# written by bench/defer',
    `listen: { host: 127.0.0.1, port: ${port} }`,
    'workers: 1',
    'admin: { enabled: false }',
    'log: { level: warn, access: false }',
    `pools: { rx: { targets: ['${receiver}'] } }`,
    `queue: ${queue}`,
    'routes:',
    '  - { id: health, match: { path: /healthz }, respond: { status: 200, body: ok } }',
    `  - { id: hooks, match: { path: /hooks/* }, defer: { pool: rx, ${deliver ? 'concurrency: 64' : 'rate: 1/h'} } }`,
    '',
  ].join('\n');
}

async function startManifold(
  tmp: string,
  name: string,
  yaml: string,
): Promise<{ child: Child; origin: string }> {
  const file = join(tmp, `${name}.yaml`);
  const port = Number(/port: (\d+)/.exec(yaml)![1]);
  writeFileSync(file, yaml);
  const child = new Child(name, process.execPath, [join(REPO, 'src/main.ts'), '--config', file], {
    cwd: REPO,
    stdout: 'capture',
  });
  const origin = `http://127.0.0.1:${port}`;
  await waitReady(child, `${origin}/healthz`);
  return { child, origin };
}

async function measureAccepts(
  origin: string,
  connections: number,
  duration: number,
): Promise<AcceptMeasurement> {
  // Not an object literal, so the fields the bench's autocannon typings leave out pass.
  const options = {
    url: `${origin}/hooks/bench`,
    method: 'POST',
    body: BODY,
    headers: { 'content-type': 'application/json' },
    connections,
    duration,
    pipelining: 1,
    timeout: 10,
  };
  const result = await autocannon(options);
  const problems: string[] = [];
  if (result.errors > 0) problems.push(`${result.errors} errors (${result.timeouts} timeouts)`);
  let accepted = 0;
  for (const [status, { count }] of Object.entries(result.statusCodeStats)) {
    if (status === '202') accepted = count;
    else problems.push(`${count} × status ${status}`);
  }
  if (accepted === 0 && problems.length === 0) problems.push('no answers at all');
  const seconds = result.duration > 0 ? result.duration : duration;
  return { rps: accepted / seconds, p50: result.latency.p50, p99: result.latency.p99, accepted, problems };
}

async function delivered(receiver: string): Promise<{ count: number; last: number }> {
  const res = await httpGet(`${receiver}/__count`);
  return JSON.parse(res.body.toString()) as { count: number; last: number };
}

async function pgReachable(): Promise<string | null> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (err) {
    return `PostgreSQL at ${PG_URL.replace(/:[^:@/]*@/, ':***@')} cannot be reached: ${(err as Error).message}`;
  } finally {
    await client.end().catch(() => {});
  }
}

async function dropSchemas(schemas: readonly string[]): Promise<void> {
  if (schemas.length === 0) return;
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  } finally {
    await client.end();
  }
}

function describe(m: AcceptMeasurement): string {
  const base = `${fmtInt(m.rps).padStart(7)} accepts/s  p50 ${fmtFixed(m.p50, 0).padStart(3)} ms  p99 ${fmtFixed(m.p99, 0).padStart(3)} ms  load ${loadavg()[0].toFixed(1)}`;
  return m.problems.length === 0 ? base : `${base}  INVALID: ${m.problems.join(', ')}`;
}

async function run(options: BenchOptions): Promise<Record<string, unknown>> {
  const schemas: string[] = [];
  try {
    return await inTempDir('manifold-bench-defer-', (tmp) => runIn(tmp, options, schemas));
  } finally {
    await dropSchemas(schemas).catch(() => {});
  }
}

async function runIn(
  tmp: string,
  options: BenchOptions,
  schemas: string[],
): Promise<Record<string, unknown>> {
  const tag = `bench_defer_${Date.now().toString(36)}`;
  const stores: Store[] = [
    { id: 'sqlite', queue: (n) => `{ driver: sqlite, path: '${join(tmp, `queue-${n}.db`)}' }` },
    {
      id: 'postgres',
      queue: (n) => {
        schemas.push(`${tag}_${n}`);
        return `{ driver: postgres, url: '${PG_URL}', schema: ${tag}_${n} }`;
      },
    },
  ];
  const skipped: Array<{ id: string; reason: string }> = [];
  const pgProblem = await pgReachable();
  const selected = stores.filter((s) => {
    if (options.only.length > 0 && !options.only.includes(s.id)) return false;
    if (s.id === 'postgres' && pgProblem !== null) {
      skipped.push({ id: s.id, reason: pgProblem });
      return false;
    }
    return true;
  });

  log('Manifold defer benchmark: durable accepts/s and delivery throughput, one process (one core)');
  log(machineLine());
  log(
    `${options.connections} connections, keep-alive, POST of ${BODY.length} bytes; ${options.warmup} s warm-up, ` +
      `${options.rounds} round(s) × ${options.duration} s per store, then drain and end-to-end runs of ${options.duration} s`,
  );
  log(
    'load generator: autocannon in the bench process; receiver: node:http answering 204, in its own process',
  );
  for (const s of skipped) log(`skip ${s.id}: ${s.reason}`);
  log();

  const rxPort = await freePort();
  const rxChild = new Child(
    'receiver',
    process.execPath,
    [join(REPO, 'bench/defer/receiver.ts'), String(rxPort)],
    {
      ipc: true,
      cwd: REPO,
    },
  );
  const receiver = `http://127.0.0.1:${rxPort}`;
  await waitReady(rxChild, `${receiver}/__count`);

  // 1. accept: deliveries held back, interleaved rounds.
  const accepting = new Map<string, { child: Child; origin: string; queue: string }>();
  for (const store of selected) {
    const queue = store.queue(1);
    const yaml = manifoldYaml(await freePort(), receiver, queue, false);
    accepting.set(store.id, { ...(await startManifold(tmp, `${store.id}-accept`, yaml)), queue });
    log(`ready ${store.id} (accepting only)`);
  }
  for (const store of selected) {
    const m = await measureAccepts(accepting.get(store.id)!.origin, options.connections, options.warmup);
    log(`warm-up ${store.id.padEnd(9)} ${describe(m)}`);
    await sleep(SETTLE_MS);
  }
  const accepts = new Map<string, AcceptMeasurement[]>();
  for (let r = 0; r < options.rounds; r++) {
    const order = selected.map((_, i) => selected[(i + r) % selected.length]);
    for (const store of order) {
      const m = await measureAccepts(accepting.get(store.id)!.origin, options.connections, options.duration);
      accepts.set(store.id, [...(accepts.get(store.id) ?? []), m]);
      log(`round ${r + 1}/${options.rounds}  ${store.id.padEnd(9)} ${describe(m)}`);
      await sleep(SETTLE_MS);
    }
  }
  log();

  // 2. drain: the same stores, deliveries on.
  const drains = new Map<string, { rps: number; backlogLeft: boolean }>();
  for (const store of selected) {
    const a = accepting.get(store.id)!;
    await a.child.stop();
    const yaml = manifoldYaml(await freePort(), receiver, a.queue, true);
    const { child } = await startManifold(tmp, `${store.id}-drain`, yaml);
    const before = await delivered(receiver);
    const started = performance.now();
    await sleep(options.duration * 1000);
    const after = await delivered(receiver);
    const seconds = (performance.now() - started) / 1000;
    const rps = (after.count - before.count) / seconds;
    const backlogLeft = Date.now() - after.last < 200;
    drains.set(store.id, { rps, backlogLeft });
    log(
      `drain ${store.id.padEnd(9)} ${fmtInt(rps).padStart(7)} deliveries/s${backlogLeft ? '' : '  (the backlog ran out: a lower bound)'}`,
    );
    await child.stop();
  }
  log();

  // 3. end to end: a fresh store, accepting and delivering at once.
  const e2e = new Map<
    string,
    { accepts: AcceptMeasurement; deliveredRps: number; lagMs: number; complete: boolean }
  >();
  for (const store of selected) {
    const yaml = manifoldYaml(await freePort(), receiver, store.queue(2), true);
    const { child, origin } = await startManifold(tmp, `${store.id}-e2e`, yaml);
    const before = await delivered(receiver);
    const started = Date.now();
    const m = await measureAccepts(origin, options.connections, options.duration);
    const loadEnd = Date.now();
    const deadline = loadEnd + Math.max(60_000, options.duration * 6_000);
    let now = await delivered(receiver);
    while (now.count - before.count < m.accepted && Date.now() < deadline) {
      await sleep(50);
      now = await delivered(receiver);
    }
    const got = now.count - before.count;
    const complete = got >= m.accepted;
    const deliveredRps = got / ((now.last - started) / 1000);
    const lagMs = now.last - loadEnd;
    e2e.set(store.id, { accepts: m, deliveredRps, lagMs, complete });
    log(
      `e2e   ${store.id.padEnd(9)} ${describe(m)}; delivered ${fmtInt(got)}/${fmtInt(m.accepted)} at ${fmtInt(deliveredRps)}/s, last ${fmtInt(lagMs)} ms after the load`,
    );
    await child.stop();
  }
  await stopAll();
  log();

  // Report.
  const rows: string[][] = [
    [
      'store',
      'durable accepts/s',
      'min–max',
      'p50 ms',
      'p99 ms',
      'drain deliveries/s',
      'e2e accepts/s',
      'e2e delivered/s',
      'status',
    ],
  ];
  const summary: Record<string, Record<string, unknown>> = {};
  let valid = true;
  for (const store of selected) {
    const ms = accepts.get(store.id) ?? [];
    const problems = [...new Set(ms.flatMap((m) => m.problems))];
    const e = e2e.get(store.id)!;
    if (e.accepts.problems.length > 0) problems.push(...e.accepts.problems.map((p) => `e2e: ${p}`));
    if (!e.complete) problems.push('e2e: not every accepted request was delivered in time');
    if (problems.length > 0) valid = false;
    const rps = median(ms.map((m) => m.rps));
    const drain = drains.get(store.id)!;
    rows.push([
      store.id,
      fmtInt(rps),
      ms.length > 1
        ? `${fmtInt(Math.min(...ms.map((m) => m.rps)))}–${fmtInt(Math.max(...ms.map((m) => m.rps)))}`
        : '',
      fmtFixed(median(ms.map((m) => m.p50)), 0),
      fmtFixed(median(ms.map((m) => m.p99)), 0),
      `${fmtInt(drain.rps)}${drain.backlogLeft ? '' : ' (≥)'}`,
      fmtInt(e.accepts.rps),
      fmtInt(e.deliveredRps),
      problems.length === 0 ? 'ok' : `INVALID: ${problems.join(', ')}`,
    ]);
    summary[store.id] = {
      accepts_per_s: round(rps, 0),
      accepts_rounds: ms.map((m) => round(m.rps, 0)),
      p50_ms: round(median(ms.map((m) => m.p50)), 1),
      p99_ms: round(median(ms.map((m) => m.p99)), 1),
      drain_deliveries_per_s: round(drain.rps, 0),
      drain_backlog_left: drain.backlogLeft,
      e2e_accepts_per_s: round(e.accepts.rps, 0),
      e2e_delivered_per_s: round(e.deliveredRps, 0),
      e2e_last_delivery_after_load_ms: round(e.lagMs, 0),
      valid: problems.length === 0,
      ...(problems.length > 0 ? { problems } : {}),
    };
  }
  log(`Results (accepts: median over ${options.rounds} round(s); only 202 answers counted)`);
  log(table(rows, ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left']));
  const sqlite = summary.sqlite?.accepts_per_s as number | undefined;
  if (sqlite !== undefined)
    log(
      `\nTarget: ≥ ${fmtInt(TARGET_ACCEPTS)} durable accepts/s per core with SQLite: ${fmtInt(sqlite)} — ${sqlite >= TARGET_ACCEPTS ? 'met' : 'below'}`,
    );
  if (availableParallelism() < 4)
    log(
      `note: ${availableParallelism()} cores shared by the load generator, Manifold, the receiver and PostgreSQL: the load generator may be the limit`,
    );
  log(
    `load average at the end: ${loadAverages()}`,
  );
  log();
  return {
    node: process.version,
    cores: availableParallelism(),
    body_bytes: BODY.length,
    stores: summary,
    target_accepts_per_s: TARGET_ACCEPTS,
    skipped,
    valid,
  };
}

export const suite: Suite = {
  description: 'durable accepts/s (SQLite, PostgreSQL) and delivery throughput of one Manifold process',
  run,
};
