/**
 * The hedge suite (issue 4): tail latency against heavy-tailed targets (95% ~5 ms, 5% ~500 ms,
 * bench/hedge/upstream.ts), through one Manifold worker with the same pool of three targets
 * behind four routes: `single`, `hedge` after a fixed delay, `hedge` after the route's p95,
 * and `fanout` to all three. Reported per strategy: req/s, p50/p99/p99.9 and the extra upstream
 * load (requests the targets saw per request answered, minus one). Aim (issue 4): p99 cut by
 * ≥10× with hedging at <10% extra requests. Interleaved rounds, medians, as in the proxy suite.
 *
 * The load is open-loop at a fixed rate (`--rate`, default 300 req/s), well below what the
 * machine can serve: tail latency is the point, and a saturated run would measure queueing
 * instead. Every strategy is offered the same requests per second. `--connections` is unused.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool as UndiciPool } from 'undici';
import {
  Child,
  freePort,
  httpGet,
  waitReady,
  inTempDir,
} from '../lib/processes.ts';
import { fmtFixed, fmtInt, median, round, table, log, machineLine } from '../lib/report.ts';
import type { BenchOptions, Suite } from '../lib/suite.ts';
import { REPO } from '../lib/contestants.ts';

const TARGETS = 3;
const SETTLE_MS = 300;
/** The fixed hedge delay: above the fast mode (≤ 6 ms), far below the slow one. */
const HEDGE_AFTER = '10ms';
const DEFAULT_RATE = 300;
/** Enough that the slow answers never hold them all: the load stays open. */
const MAX_CONNECTIONS = 512;

interface Strategy {
  id: string;
  /** The route's `proxy:` keys besides the pool. */
  proxy: string;
  note: string;
}

const STRATEGIES: readonly Strategy[] = [
  { id: 'single', proxy: 'strategy: single', note: 'one attempt, round-robin over the three targets' },
  {
    id: 'hedge',
    proxy: `strategy: hedge, hedge_after: ${HEDGE_AFTER}`,
    note: `another attempt every ${HEDGE_AFTER} without an answer, up to 3; budget 10%`,
  },
  {
    id: 'hedge-p95',
    proxy: 'strategy: hedge, hedge_after: p95',
    note: "another attempt at the route's recent p95, up to 3; budget 10%",
  },
  { id: 'fanout', proxy: 'strategy: fanout', note: 'all three targets at once, the first answer wins' },
];

interface Tail {
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  /** Upstream requests per answered request, minus one. */
  extra: number;
  problems: string[];
}

function manifoldYaml(port: number, targets: readonly number[]): string {
  return [
    '# written by bench/hedge: one pool of heavy-tailed targets, one route per strategy',
    `listen: { host: 127.0.0.1, port: ${port} }`,
    'workers: 1',
    'admin: { enabled: false }',
    'pools:',
    `  tail: { targets: [${targets.map((p) => `'http://127.0.0.1:${p}'`).join(', ')}] }`,
    'routes:',
    ...STRATEGIES.flatMap((s) => [
      `  - id: ${s.id}`,
      `    match: { path: /${s.id}/* }`,
      `    proxy: { pool: tail, strip_prefix: /${s.id}, ${s.proxy} }`,
      '    timeout: 10s',
    ]),
    'log: { level: warn, access: false }',
    '',
  ].join('\n');
}

async function upstreamCount(ports: readonly number[]): Promise<number> {
  let total = 0;
  for (const p of ports) total += Number((await httpGet(`http://127.0.0.1:${p}/__count`)).body.toString());
  return total;
}

/** Nearest-rank percentile of sorted values, q in (0, 1]. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

interface Load {
  rate: number;
  duration: number;
}

/**
 * Open-loop load: requests leave on a fixed schedule whatever the answers do, over as many
 * connections as needed, and each latency is counted from when its request was due, so a slow
 * answer cannot hide the ones that would have queued behind it (no coordinated omission).
 */
async function measureTail(
  origin: string,
  path: string,
  load: Load,
  ports: readonly number[],
): Promise<Tail> {
  const latencies: number[] = [];
  let errors = 0;
  let other = 0;
  let sent = 0;
  const before = await upstreamCount(ports);
  const client = new UndiciPool(origin, { connections: MAX_CONNECTIONS, pipelining: 1 });
  const pending = new Set<Promise<void>>();
  const interval = 1000 / load.rate;
  const start = performance.now();
  const end = start + load.duration * 1000;
  for (let due = start; due < end; ) {
    for (const now = performance.now(); due <= now && due < end; due += interval) {
      const at = due;
      sent++;
      const p = client.request({ path, method: 'GET' }).then(
        async (res) => {
          await res.body.dump();
          if (res.statusCode === 200) latencies.push(performance.now() - at);
          else other++;
        },
        () => {
          errors++;
        },
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    await sleep(Math.max(0, due - performance.now()));
  }
  await Promise.all(pending);
  await client.close();
  await sleep(SETTLE_MS);
  const seen = (await upstreamCount(ports)) - before;
  const problems: string[] = [];
  if (errors > 0) problems.push(`${errors} errors`);
  if (other > 0) problems.push(`${other} answers other than 200`);
  const sorted = Float64Array.from(latencies).sort();
  return {
    rps: latencies.length / load.duration,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    p999: percentile(sorted, 0.999),
    extra: seen / Math.max(1, sent) - 1,
    problems,
  };
}

function run(options: BenchOptions): Promise<Record<string, unknown>> {
  return inTempDir('manifold-bench-hedge-', (tmp) => runIn(tmp, options));
}

async function runIn(tmp: string, options: BenchOptions): Promise<Record<string, unknown>> {
  const rate = Number(options.extra.rate ?? DEFAULT_RATE);
  if (!Number.isInteger(rate) || rate < 1)
    throw new Error(`--rate must be a whole number of requests per second`);
  const load = (duration: number): Load => ({ rate, duration });
  const selected = STRATEGIES.filter((s) => options.only.length === 0 || options.only.includes(s.id));
  const estimate =
    selected.length * options.warmup +
    options.rounds * selected.length * (options.duration + SETTLE_MS / 1000);
  log('Manifold hedge benchmark');
  log(machineLine());
  log(
    `${TARGETS} targets answering in ~5 ms (95%) or ~500 ms (5%); ${rate} req/s open loop ` +
      `(--rate); ${options.rounds} round(s) × ${options.duration} s; about ${Math.ceil(estimate)} s in all`,
  );
  for (const s of selected) log(`  ${s.id.padEnd(10)} ${s.note}`);
  log();

  const ports: number[] = [];
  for (let i = 0; i < TARGETS; i++) ports.push(await freePort());
  const upstream = new Child(
    'upstream',
    process.execPath,
    [join(REPO, 'bench/hedge/upstream.ts'), ...ports.map(String)],
    {
      ipc: true,
      cwd: REPO,
    },
  );
  for (const p of ports) await waitReady(upstream, `http://127.0.0.1:${p}/__count`);

  const port = await freePort();
  const file = join(tmp, 'manifold.yaml');
  writeFileSync(file, manifoldYaml(port, ports));
  const manifold = new Child('manifold', process.execPath, [join(REPO, 'src/main.ts'), '--config', file], {
    cwd: REPO,
    stdout: 'capture',
  });
  const origin = `http://127.0.0.1:${port}`;
  await waitReady(manifold, `${origin}/single/`);

  // Warm-up also fills the p95 route's latency window.
  for (const s of selected) {
    if (options.warmup > 0) await measureTail(origin, `/${s.id}/`, load(options.warmup), ports);
  }

  const results = new Map<string, Tail[]>(selected.map((s) => [s.id, []]));
  for (let r = 0; r < options.rounds; r++) {
    for (let i = 0; i < selected.length; i++) {
      const s = selected[(i + r) % selected.length];
      if (!manifold.alive) throw new Error(manifold.describeExit());
      const m = await measureTail(origin, `/${s.id}/`, load(options.duration), ports);
      results.get(s.id)!.push(m);
      log(
        `round ${r + 1} ${s.id.padEnd(10)} ${fmtInt(m.rps).padStart(6)} req/s  p50 ${fmtFixed(m.p50, 1)} ms  ` +
          `p99 ${fmtFixed(m.p99, 1)} ms  p99.9 ${fmtFixed(m.p999, 1)} ms  extra ${fmtFixed(m.extra * 100, 1)}%` +
          (m.problems.length ? `  INVALID: ${m.problems.join(', ')}` : ''),
      );
    }
  }
  log();

  const summary = selected.map((s) => {
    const ms = results.get(s.id)!;
    return {
      id: s.id,
      rps: median(ms.map((m) => m.rps)),
      p50: median(ms.map((m) => m.p50)),
      p99: median(ms.map((m) => m.p99)),
      p999: median(ms.map((m) => m.p999)),
      extra: median(ms.map((m) => m.extra)),
      problems: ms.flatMap((m) => m.problems),
    };
  });
  const single = summary.find((s) => s.id === 'single');
  log(
    table(
      [
        ['strategy', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'extra upstream', 'p99 cut vs single'],
        ...summary.map((s) => [
          s.id,
          fmtInt(s.rps),
          fmtFixed(s.p50, 1),
          fmtFixed(s.p99, 1),
          fmtFixed(s.p999, 1),
          `${fmtFixed(s.extra * 100, 1)}%`,
          single ? `${fmtFixed(single.p99 / s.p99, 1)}×` : '—',
        ]),
      ],
      ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
    ),
  );
  log();
  log('aim (issue 4): hedge cuts p99 by ≥10× vs single with <10% extra upstream requests');
  const valid = summary.every((s) => s.problems.length === 0);
  return {
    valid,
    rate,
    targets: { fast_ms: 5, slow_ms: 500, slow_share: 0.05, count: TARGETS },
    results: summary.map((s) => ({
      id: s.id,
      rps: round(s.rps, 0),
      p50_ms: round(s.p50, 2),
      p99_ms: round(s.p99, 2),
      p999_ms: round(s.p999, 2),
      extra_upstream: round(s.extra, 4),
      p99_cut: single ? round(single.p99 / s.p99, 2) : null,
      ...(s.problems.length ? { problems: s.problems } : {}),
    })),
  };
}

export const suite: Suite = {
  description: 'tail latency of single vs hedge vs fanout against heavy-tailed targets',
  options: { rate: { type: 'string' } },
  run,
};
