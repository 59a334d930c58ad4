/**
 * The multiplex suite (issue 5): what `POST /multiplex` adds to a batch. Targets answer after a
 * fixed delay (20 ms), so a batch can finish no sooner than that; the suite sends batches of 1,
 * 10 and 100 requests, one batch at a time over one keep-alive connection, and reports batch
 * latency minus the delay (p50/p99): the gateway's overhead. The aim: under 2 ms at 100.
 *
 * The same requests sent by the bench process itself, all at once through an undici Agent
 * ("direct"), are measured in the same rounds: their figure is the floor (timer slack of the
 * targets, loopback, the client), so the difference is what Manifold alone costs.
 *
 * The requests of a batch go to 10 target origins (one target process, 10 ports), as a
 * batch to many bidders would; the route's limits are set so that nothing waits for a
 * connection or a concurrency slot (the overhead measured is not a queue).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, Client, request } from 'undici';
import { Child, freePort, waitReady, inTempDir } from '../lib/processes.ts';
import { fmtFixed, fmtInt, median, round, table, loadAverages, log, machineLine } from '../lib/report.ts';
import type { BenchOptions, Suite } from '../lib/suite.ts';
import { REPO } from '../lib/contestants.ts';

const DELAY_MS = 20;
const ORIGINS = 10;
const SIZES = [1, 10, 100] as const;
const AIM = { size: 100, ms: 2 };
/** Per-batch deadline: far above the delay, so a timeout means something is wrong. */
const BATCH_TIMEOUT_MS = 2000;

type Contestant = 'manifold' | 'direct';
const CONTESTANTS: readonly Contestant[] = ['manifold', 'direct'];

function manifoldYaml(port: number): string {
  return [
    '# written by bench/multiplex: one batch route, limits above what a batch of 100 needs',
    `listen: { host: 127.0.0.1, port: ${port} }`,
    'workers: 1',
    'routes:',
    '  - id: health',
    '    match: { path: /healthz }',
    '    respond: { status: 200 }',
    '  - id: batch',
    '    match: { path: /multiplex, methods: [POST] }',
    '    multiplex:',
    '      allow: [127.0.0.0/8]',
    '      max_requests: 100',
    '      max_concurrency: 1000',
    '      max_connections_per_origin: 100',
    'log: { level: warn, access: false }',
    'admin: { enabled: false }',
    '',
  ].join('\n');
}

/** Nearest-rank percentile of sorted values, q in (0, 1]. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

interface Measurement {
  /** Batch latencies in ms (whole answer received). */
  latencies: number[];
  /** CPU time (user + system) the gateway process spent per batch, in ms; NaN when unknown. */
  cpuPerBatch: number;
  problems: string[];
}

/** CPU time a process has used, in ms (Linux /proc; NaN elsewhere). Ticks are 10 ms. */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** Sends one batch; resolves, once the whole answer is in, with its check (null: valid). */
type Sender = () => Promise<() => string | null>;

/** Sends batches one after another for `seconds`; answers are checked after the clock stops. */
async function measure(send: Sender, seconds: number, pid?: number): Promise<Measurement> {
  const cpu0 = cpuMs(pid);
  const latencies: number[] = [];
  const problems = new Set<string>();
  let failed = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const start = performance.now();
    let problem: string | null;
    let ms = 0;
    try {
      const check = await send();
      ms = performance.now() - start;
      problem = check();
    } catch (err) {
      problem = (err as Error).message;
    }
    if (problem === null) latencies.push(ms);
    else {
      failed++;
      problems.add(problem);
    }
  }
  if (latencies.length === 0) problems.add('no batch completed');
  const cpuPerBatch = (cpuMs(pid) - cpu0) / (latencies.length + failed);
  return { latencies, cpuPerBatch, problems: [...problems] };
}

function targets(ports: readonly number[], n: number): string[] {
  return Array.from({ length: n }, (_, i) => `http://127.0.0.1:${ports[i % ports.length]}/bid?i=${i}`);
}

/** One batch through Manifold; parsing the 100 results is the client's time, not counted. */
function manifoldSender(client: Client, uris: readonly string[]): Sender {
  const body = JSON.stringify({ timeout_msec: BATCH_TIMEOUT_MS, requests: uris.map((uri) => ({ uri })) });
  return async () => {
    const res = await client.request({
      method: 'POST',
      path: '/multiplex',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const status = res.statusCode;
    const text = await res.body.text();
    return () => {
      if (status !== 200) return `status ${status}: ${text.slice(0, 200)}`;
      const { responses } = JSON.parse(text) as { responses: Array<{ status?: number }> };
      if (responses.length !== uris.length) return `${responses.length} results for ${uris.length} requests`;
      const bad = responses.find((x) => x.status !== 200);
      return bad ? `an item failed: ${JSON.stringify(bad).slice(0, 200)}` : null;
    };
  };
}

function directSender(agent: Agent, uris: readonly string[]): Sender {
  return async () => {
    const answers = await Promise.all(
      uris.map(async (uri) => {
        const res = await request(uri, { dispatcher: agent });
        await res.body.text();
        return res.statusCode;
      }),
    );
    const bad = answers.find((s) => s !== 200);
    return () => (bad === undefined ? null : `status ${bad}`);
  };
}

function run(options: BenchOptions): Promise<Record<string, unknown>> {
  return inTempDir('manifold-bench-', (tmp) => runIn(tmp, options));
}

async function runIn(tmp: string, options: BenchOptions): Promise<Record<string, unknown>> {
  const chosen = CONTESTANTS.filter((c) => options.only.length === 0 || options.only.includes(c));
  if (!chosen.includes('manifold'))
    throw new Error(`--only must include manifold (contestants: ${CONTESTANTS.join(', ')})`);
  log('Manifold multiplex benchmark: batch latency minus the targets’ fixed delay');
  log(machineLine());
  log(
    `targets answer after ${DELAY_MS} ms on ${ORIGINS} origins; one batch at a time over one keep-alive ` +
      `connection (-c does not apply); ${options.warmup} s warm-up per size, ${options.rounds} round(s) × ` +
      `${SIZES.length} sizes × ${chosen.length} contestant(s) × ${options.duration} s`,
  );
  log();

  const ports = await Promise.all(Array.from({ length: ORIGINS }, () => freePort()));
  const upstream = new Child(
    'targets',
    process.execPath,
    [fileURLToPath(new URL('./upstream.ts', import.meta.url)), String(DELAY_MS), ...ports.map(String)],
    { ipc: true, cwd: REPO },
  );
  for (const port of ports) await waitReady(upstream, `http://127.0.0.1:${port}/`);

  const port = await freePort();
  const file = join(tmp, 'multiplex.yaml');
  writeFileSync(file, manifoldYaml(port));
  const manifold = new Child('manifold', process.execPath, [join(REPO, 'src/main.ts'), '--config', file], {
    cwd: REPO,
    stdout: 'capture',
  });
  const origin = `http://127.0.0.1:${port}`;
  await waitReady(manifold, `${origin}/healthz`);
  log(`ready: targets (pid ${upstream.pid}), manifold (pid ${manifold.pid}, port ${port})`);

  const client = new Client(origin, { pipelining: 1, keepAliveTimeout: 60_000 });
  const agent = new Agent({ connections: 100, keepAliveTimeout: 60_000 });
  const senders = new Map<string, Sender>();
  for (const size of SIZES) {
    const uris = targets(ports, size);
    senders.set(`manifold|${size}`, manifoldSender(client, uris));
    senders.set(`direct|${size}`, directSender(agent, uris));
  }
  const pidOf = (c: Contestant) => (c === 'manifold' ? manifold.pid : undefined);
  const alive = () => {
    if (!upstream.alive) throw new Error(upstream.describeExit());
    if (!manifold.alive) throw new Error(manifold.describeExit());
  };

  try {
    // Warm-up: a fresh process runs slow for its first seconds, and pools fill.
    for (const size of SIZES) {
      for (const c of chosen) {
        const m = await measure(senders.get(`${c}|${size}`)!, options.warmup, pidOf(c));
        alive();
        log(`warm-up  ${String(size).padStart(3)} × ${c.padEnd(8)} ${describe(m)}`);
      }
    }
    log();

    const results = new Map<string, Measurement[]>();
    for (let r = 0; r < options.rounds; r++) {
      for (const size of SIZES) {
        const order = r % 2 === 0 ? chosen : [...chosen].reverse();
        for (const c of order) {
          const m = await measure(senders.get(`${c}|${size}`)!, options.duration, pidOf(c));
          alive();
          const key = `${c}|${size}`;
          results.set(key, [...(results.get(key) ?? []), m]);
          log(
            `round ${r + 1}/${options.rounds}  ${String(size).padStart(3)} × ${c.padEnd(8)} ${describe(m)}`,
          );
        }
      }
    }
    log();
    return report(results, chosen, options);
  } finally {
    await client.close();
    await agent.close();
  }
}

function overheads(latencies: readonly number[]): Float64Array {
  return Float64Array.from(latencies, (ms) => ms - DELAY_MS).sort();
}

function describe(m: Measurement): string {
  const o = overheads(m.latencies);
  const cpu = Number.isFinite(m.cpuPerBatch) ? `  gateway CPU ${fmtFixed(m.cpuPerBatch, 2)} ms/batch` : '';
  const base =
    `${fmtInt(o.length).padStart(6)} batches  p50 +${fmtFixed(percentile(o, 0.5), 2)} ms` +
    `  p99 +${fmtFixed(percentile(o, 0.99), 2)} ms${cpu}`;
  return m.problems.length === 0 ? base : `${base}  INVALID: ${m.problems.join(', ')}`;
}

interface Summary {
  batches: number;
  p50: number;
  p99: number;
  /** Median over rounds; NaN for direct. */
  cpu: number;
  problems: string[];
}

function summarise(ms: readonly Measurement[]): Summary {
  const o = overheads(ms.flatMap((m) => m.latencies));
  const problems = [...new Set(ms.flatMap((m) => m.problems))];
  if (ms.length === 0) problems.push('not measured');
  return {
    batches: o.length,
    p50: percentile(o, 0.5),
    p99: percentile(o, 0.99),
    cpu: median(ms.map((m) => m.cpuPerBatch)),
    problems,
  };
}

function report(
  results: Map<string, Measurement[]>,
  chosen: readonly Contestant[],
  options: BenchOptions,
): Record<string, unknown> {
  const rows: string[][] = [
    [
      'batch',
      'contestant',
      'batches',
      'p50 − 20 ms',
      'p99 − 20 ms',
      'vs direct (p50)',
      'gateway CPU',
      'status',
    ],
  ];
  const json: Record<string, Record<string, unknown>> = {};
  let valid = true;
  for (const size of SIZES) {
    json[size] = {};
    const s = new Map(chosen.map((c) => [c, summarise(results.get(`${c}|${size}`) ?? [])]));
    const direct = s.get('direct');
    for (const [c, x] of s) {
      valid &&= x.problems.length === 0;
      json[size][c] = {
        batches: x.batches,
        p50_overhead_ms: round(x.p50, 3),
        p99_overhead_ms: round(x.p99, 3),
        ...(c === 'manifold' ? { cpu_ms_per_batch: round(x.cpu, 2) } : {}),
        ...(x.problems.length > 0 ? { problems: x.problems } : {}),
      };
      rows.push([
        `${size}`,
        c === 'manifold' ? 'Manifold' : 'direct (undici, all at once)',
        fmtInt(x.batches),
        `${fmtFixed(x.p50, 2)} ms`,
        `${fmtFixed(x.p99, 2)} ms`,
        c === 'manifold' && direct ? `+${fmtFixed(x.p50 - direct.p50, 2)} ms` : '',
        Number.isFinite(x.cpu) ? `${fmtFixed(x.cpu, 2)} ms/batch` : '',
        x.problems.length === 0 ? 'ok' : `INVALID: ${x.problems.join(', ')}`,
      ]);
    }
  }
  log(`Results (every batch of ${options.rounds} round(s); latency minus the targets' ${DELAY_MS} ms)`);
  log(table(rows, ['right', 'left', 'right', 'right', 'right', 'right', 'right', 'left']));
  log();
  const aim = json[AIM.size]?.manifold as { p50_overhead_ms: number | null; problems?: string[] } | undefined;
  const met =
    aim !== undefined && !aim.problems && aim.p50_overhead_ms !== null && aim.p50_overhead_ms < AIM.ms;
  log(
    `Aim (issue 5): under ${AIM.ms} ms at ${AIM.size} requests — p50 +${fmtFixed(aim?.p50_overhead_ms ?? Number.NaN, 2)} ms: ${met ? 'met' : 'not met'}`,
  );
  log(
    `Setup: Manifold --workers 1, access log off; gateway CPU is user+system time per batch (/proc, ` +
      `10 ms ticks; median over rounds); load average at the end ${loadAverages()}`,
  );
  log();
  return {
    node: process.version,
    cores: availableParallelism(),
    delay_ms: DELAY_MS,
    origins: ORIGINS,
    sizes: json,
    aim: { size: AIM.size, p50_under_ms: AIM.ms, met },
    valid,
  };
}

export const suite: Suite = {
  description: 'POST /multiplex overhead: batches of 1, 10, 100 to targets with a fixed 20 ms delay',
  run,
};
