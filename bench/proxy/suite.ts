/**
 * The proxy suite (DESIGN.md, "Performance targets"): throughput, requests per second per proxy
 * core (answers ÷ the CPU seconds of the proxy's process tree over the window, lib/cpu.ts) and
 * p50/p99 latency of the same upstream reached directly, through Manifold (defaults, access log
 * off, log/metrics/tracing off, optionally a `--baseline` tree) and through peer proxies, all
 * inside one run. Each round starts every contestant in a fresh process, warms it up, then
 * visits every contestant in turn under each body (starting one further along each round), and
 * stops them; results are medians over rounds, and ratios are medians of the per-round ratios,
 * so slow drift in the machine's load, and each process's own luck, hit both sides alike.
 */
import { availableParallelism, loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { statSync, truncateSync } from 'node:fs';
import {
  type Contestant,
  liveness,
  oneRound,
  type Running,
  selectContestants,
  type Started,
  startContestants,
  startUpstream,
} from '../lib/contestants.ts';
import { cpuAvailable } from '../lib/cpu.ts';
import { measure } from '../lib/load.ts';
import { httpGet, stopAll, waitReady, inTempDir } from '../lib/processes.ts';
import { fmtFixed, fmtInt, loadAverages, log, machineLine, ratioCell, round, table } from '../lib/report.ts';
import {
  type Figure,
  pairedRatio,
  type Sample as CpuSample,
  contestantsJson,
  judge,
  statusCell,
  summaryCells,
  type Summarised,
  summarise,
  withCpu,
} from '../lib/samples.ts';
import type { BenchOptions, Suite } from '../lib/suite.ts';
import { BODIES, type BodySpec } from '../peers/bodies.ts';
import { resolve } from 'node:path';
import { CONTESTANTS, manifold } from './contestants.ts';

/**
 * Ratios reported: Manifold (or a variant) over another contestant, with DESIGN.md's target
 * (issue 11), which is on requests per proxy core; req/s is shown beside it.
 */
const RATIOS: ReadonlyArray<{ num: string; den: string; label: string; target?: number }> = [
  { num: 'manifold', den: 'direct', label: 'Manifold / direct' },
  { num: 'manifold', den: 'manifold@base', label: 'Manifold / its --baseline tree' },
  { num: 'manifold', den: 'undici', label: 'Manifold / undici minimal', target: 0.9 },
  { num: 'manifold', den: 'fastify', label: 'Manifold / @fastify/http-proxy', target: 1.5 },
  { num: 'manifold', den: 'http-proxy', label: 'Manifold / node-http-proxy', target: 2 },
  { num: 'manifold', den: 'dispatch', label: 'Manifold / undici dispatch, no features' },
  { num: 'dispatch', den: 'undici', label: 'undici dispatch, no features / undici minimal' },
  { num: 'dispatch', den: 'fastify', label: 'undici dispatch, no features / @fastify/http-proxy' },
  { num: 'dispatch', den: 'http-proxy', label: 'undici dispatch, no features / node-http-proxy' },
  { num: 'manifold', den: 'nginx', label: 'Manifold / nginx' },
  { num: 'manifold', den: 'haproxy', label: 'Manifold / HAProxy' },
  { num: 'manifold', den: 'caddy', label: 'Manifold / Caddy' },
  { num: 'manifold-bare', den: 'undici', label: 'Manifold, access log off / undici minimal' },
  { num: 'manifold', den: 'manifold-bare', label: 'access log on / off (its cost)' },
  { num: 'manifold-bare', den: 'manifold-noobs', label: 'metrics + trace context on / off (their cost)' },
];

/** Pause between two measurements, so closing connections settle before the next starts. */
const SETTLE_MS = 300;

/** About what starting and checking a contestant takes, for the run's time estimate. */
const START_S = 2;

type Runner = Running<Contestant, Started>;

const origin = (r: Runner): string => `http://127.0.0.1:${r.started.port}`;

/** A measurement with the contestant's own CPU time over it (NaN for direct). */
interface Sample extends CpuSample {
  /** Bytes the contestant wrote to its log file over the measurement (the access log). */
  logBytes: number | null;
}

type Key = `${string}|${string}`;
const key = (contestant: string, body: string): Key => `${contestant}|${body}`;

/** One progress line; the 1-minute load average explains an outlier round on a shared machine. */
function describeMeasurement(m: Sample): string {
  const perCore = Number.isFinite(m.perCore) ? `${fmtInt(m.perCore).padStart(8)} req/s/core` : ''.padStart(19);
  const log = m.logBytes !== null && m.ok > 0 ? `  log ${Math.round(m.logBytes / m.ok)} B/req` : '';
  const base = `${fmtInt(m.rps).padStart(8)} req/s ${perCore}  p50 ${fmtFixed(m.p50, 2).padStart(6)} ms  p99 ${fmtFixed(m.p99, 2).padStart(6)} ms  load ${loadavg()[0].toFixed(1)}${log}`;
  return m.problems.length === 0 ? base : `${base}  INVALID: ${m.problems.join(', ')}`;
}

/**
 * One measurement of `r`, with the CPU time of its process tree read just before and just after
 * the load (so requests ÷ CPU seconds is per proxy core), its log file emptied first.
 */
async function measureOne(r: Runner, paths: readonly string[], options: BenchOptions, seconds: number): Promise<Sample> {
  const logFile = r.started.logFile;
  if (logFile !== undefined) truncateSync(logFile, 0);
  const m = await withCpu(r.started.child?.pid, () =>
    measure({ origin: origin(r), paths, connections: options.connections, duration: seconds }),
  );
  return { ...m, logBytes: logFile === undefined ? null : statSync(logFile).size };
}

/** GETs every body through a contestant and compares it byte for byte with the upstream's. */
async function checkBodies(origin: string): Promise<void> {
  for (const body of BODIES) {
    const res = await httpGet(`${origin}${body.path}`);
    if (res.status !== 200) throw new Error(`GET ${body.path} answered ${res.status}`);
    if (!res.body.equals(body.bytes))
      throw new Error(`GET ${body.path} returned ${res.body.length} bytes that differ from the upstream's`);
  }
}

function run(options: BenchOptions): Promise<Record<string, unknown>> {
  return inTempDir('manifold-bench-', (tmp) => runIn(tmp, options));
}

async function runIn(tmp: string, options: BenchOptions): Promise<Record<string, unknown>> {
  const baseline = options.extra.baseline;
  const all =
    typeof baseline === 'string'
      ? [...CONTESTANTS.slice(0, 2), manifold('default', resolve(baseline)), ...CONTESTANTS.slice(2)]
      : CONTESTANTS;
  const selected = selectContestants(all, options.only);

  const measurements = options.rounds * BODIES.length * selected.length;
  const estimate =
    options.rounds * selected.length * (options.warmup + START_S) + measurements * (options.duration + SETTLE_MS / 1000);
  log('Manifold proxy benchmark');
  log(machineLine());
  log(
    `${options.connections} connections, keep-alive, no pipelining; ${options.rounds} round(s), each in fresh processes ` +
      `(${options.warmup} s warm-up per contestant, then ${BODIES.length} bodies × ${options.duration} s); about ${Math.ceil(estimate)} s in all`,
  );
  log('load generator: autocannon in the bench process; upstream: node:http in its own process');
  log(
    cpuAvailable()
      ? 'per core: 200 answers ÷ CPU seconds (utime + stime, /proc) of the proxy process and its children over the window'
      : 'per core: not available (no /proc here); only req/s',
  );
  if (availableParallelism() < 4)
    log(
      `note: ${availableParallelism()} cores for load generator, upstream and proxy: they compete, numbers are noisy — read the ratios`,
    );
  log();

  // Upstream first; everything proxies to it.
  const upstream = await startUpstream();
  const upstreamOrigin = `http://127.0.0.1:${upstream.port}`;
  await waitReady(upstream.child, `${upstreamOrigin}${BODIES[0].path}`);
  await checkBodies(upstreamOrigin);
  const ctx = { upstream: upstreamOrigin, upstreamPort: upstream.port, tmp };
  const check = async (started: Started) => {
    const at = `http://127.0.0.1:${started.port}`;
    await waitReady(started.child, `${at}${BODIES[0].path}`);
    await checkBodies(at);
  };
  const usable = liveness(upstream.child, log);

  // Every round starts its contestants afresh: how fast a Node process runs depends on its own
  // history (what its JIT compiled, how far its young generation has grown, when its heap last
  // met a full GC), by as much as 1.5× between two processes of the same program on this
  // machine. Processes kept for the whole run would put one such draw under every round of a
  // contestant; fresh ones put a new draw under each, which the medians then average over.
  // The first round decides who runs: a contestant skipped there is reported as skipped, one
  // that cannot start or dies in a later round as dead from then on.
  const roster: Runner[] = [];
  let skipped: Array<{ id: string; reason: string }> = [];
  let versions: Record<string, string> = {};
  const results = new Map<Key, Sample[]>();
  for (let round = 0; round < options.rounds; round++) {
    const lineup = round === 0 ? selected : roster.filter((r) => r.dead === null).map((r) => r.contestant);
    log(`round ${round + 1}/${options.rounds}: starting ${lineup.length} contestant(s)`);
    const started = await startContestants(lineup, ctx, check, log);
    let running: Runner[];
    if (round === 0) {
      roster.push(...started.running);
      skipped = started.skipped;
      versions = started.versions;
      running = started.running;
    } else {
      // The roster's entries take this round's processes, so a death is recorded where the
      // report reads it.
      const entry = (id: string) => roster.find((r) => r.contestant.id === id)!;
      for (const s of started.skipped) entry(s.id).dead = `could not start in round ${round + 1}: ${s.reason}`;
      running = started.running.map((fresh) => Object.assign(entry(fresh.contestant.id), { started: fresh.started }));
    }

    // Warm-up: a fresh process runs slow for its first seconds (Manifold's code takes about 4 s
    // of load to be compiled).
    for (const r of running) {
      if (options.warmup === 0 || !usable(r)) continue;
      const m = await measureOne(
        r,
        BODIES.map((b) => b.path),
        options,
        options.warmup,
      );
      log(`warm-up ${r.contestant.id.padEnd(16)} ${describeMeasurement(m)}`);
      await sleep(SETTLE_MS);
    }

    await oneRound(running, round, BODIES, usable, SETTLE_MS, async (r, body) => {
      const m = await measureOne(r, [body.path], options, options.duration);
      const list = results.get(key(r.contestant.id, body.id)) ?? [];
      list.push(m);
      results.set(key(r.contestant.id, body.id), list);
      log(
        `round ${round + 1}/${options.rounds}  ${body.id.padEnd(5)}  ${r.contestant.id.padEnd(16)} ${describeMeasurement(m)}`,
      );
    });
    for (const r of running) await r.started.child?.stop();
    log();
  }
  await stopAll();

  return report(roster, results, skipped, versions, options);
}

/** Median over rounds of num/den of `figure` measured in the same round; NaN when either is invalid. */
function validRatio(
  num: readonly Sample[] | undefined,
  den: readonly Sample[] | undefined,
  valid: (id: 'num' | 'den') => boolean,
  figure: Figure = 'rps',
): number {
  if (!num || !den || !valid('num') || !valid('den')) return Number.NaN;
  return pairedRatio(num, den, figure);
}

function report(
  running: readonly Runner[],
  results: Map<Key, Sample[]>,
  skipped: ReadonlyArray<{ id: string; reason: string }>,
  versions: Record<string, string>,
  options: BenchOptions,
): Record<string, unknown> {
  const summaries = new Map<Key, Summarised>();
  for (const r of running)
    for (const body of BODIES)
      summaries.set(
        key(r.contestant.id, body.id),
        summarise(results.get(key(r.contestant.id, body.id)) ?? [], r.dead),
      );

  const rows: string[][] = [
    [
      'body',
      'contestant',
      'req/s',
      'min–max over rounds',
      'req/s per core',
      'p50 ms',
      'p99 ms',
      'vs direct',
      'status',
    ],
  ];
  const isValid = (id: string, body: BodySpec) => summaries.get(key(id, body.id))?.problems.length === 0;
  const ratioOf = (num: string, den: string, body: BodySpec, figure: Figure) =>
    validRatio(
      results.get(key(num, body.id)),
      results.get(key(den, body.id)),
      (which) => isValid(which === 'num' ? num : den, body),
      figure,
    );
  for (const body of BODIES) {
    for (const r of running) {
      const s = summaries.get(key(r.contestant.id, body.id))!;
      const id = r.contestant.id;
      rows.push([
        body.label,
        r.contestant.label,
        ...summaryCells(s),
        id === 'direct' ? '' : ratioCell(ratioOf(id, 'direct', body, 'rps')).replace('n/a', ''),
        statusCell(s),
      ]);
    }
  }
  log(
    `Results (median over ${options.rounds} round(s); only 200 answers counted; per core = answers ÷ the proxy's own CPU seconds)`,
  );
  log(table(rows, ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'left']));
  log();

  const has = (id: string) => running.some((r) => r.contestant.id === id);
  const ratioRows: string[][] = [
    ['ratio', ...BODIES.flatMap((b) => [`${b.label} req/s`, `${b.label} per core`]), 'target (per core)'],
  ];
  const ratios: Record<string, Record<string, { rps: number | null; per_core: number | null }>> = {};
  const met: Record<string, boolean> = {};
  for (const spec of RATIOS) {
    if (!has(spec.num) || !has(spec.den)) continue;
    const name = `${spec.num}/${spec.den}`;
    ratios[name] = {};
    const cells = BODIES.flatMap((body) => {
      const rps = ratioOf(spec.num, spec.den, body, 'rps');
      const perCore = ratioOf(spec.num, spec.den, body, 'perCore');
      ratios[name][body.id] = { rps: round(rps, 3), per_core: round(perCore, 3) };
      const mark = judge(met, `${name} ${body.id}`, perCore, spec.target);
      return [ratioCell(rps), spec.den === 'direct' ? '' : `${ratioCell(perCore)}${mark}`];
    });
    ratioRows.push([spec.label, ...cells, spec.target === undefined ? '' : `≥ ${spec.target}×`]);
  }
  if (has('manifold') && has('undici')) {
    // DESIGN.md: p99 no worse than the minimal proxy's.
    const cells = BODIES.flatMap((body) => {
      const value = ratioOf('manifold', 'undici', body, 'p99');
      ratios['manifold/undici'][body.id] = { ...ratios['manifold/undici'][body.id], ...{ p99: round(value, 3) } };
      if (Number.isFinite(value)) met[`manifold/undici p99 ${body.id}`] = value <= 1;
      const mark = Number.isFinite(value) ? (value <= 1 ? ' (met)' : ' (above)') : '';
      return [`${ratioCell(value)}${mark}`, ''];
    });
    ratioRows.push(['p99 Manifold / undici minimal', ...cells, '≤ 1× (p99)']);
  }
  if (ratioRows.length > 1) {
    log('Ratios (median over rounds of the ratio measured within each round)');
    log(table(ratioRows, ['left', ...BODIES.flatMap(() => ['right', 'right'] as const), 'right']));
    log();
  }

  log('Setup');
  for (const r of running) if (r.contestant.note) log(`  ${r.contestant.note}`);
  for (const [id, v] of Object.entries(versions)) log(`  ${id} version: ${v}`);
  for (const s of skipped) log(`  ${s.id}: skipped: ${s.reason}`);
  log(`  load average at the end: ${loadAverages()}`);
  log();

  const contestants = contestantsJson(
    running.map((r) => r.contestant.id),
    BODIES,
    (id, body) => [summaries.get(key(id, body.id))!, results.get(key(id, body.id)) ?? []],
  );
  const invalid = [...summaries.values()].some((s) => s.problems.length > 0);
  return {
    node: process.version,
    cores: availableParallelism(),
    versions,
    contestants,
    ratios,
    targets_met: met,
    skipped,
    valid: !invalid,
  };
}

export const suite: Suite = {
  description: 'throughput, requests per proxy core and p50/p99 latency: direct vs Manifold vs peer proxies',
  options: { baseline: { type: 'string' } },
  run,
};
