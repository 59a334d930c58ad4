/**
 * `npm run bench -- [suite] [flags]`: runs one benchmark suite and prints its tables, then its
 * summary as one JSON line, always the last line of stdout (`npm run bench | tail -1 | jq`).
 * The exit code is 1 when a result is invalid (non-200 answers, errors) or the run failed.
 *
 * To add a suite: write bench/<name>/suite.ts exporting `suite: Suite` (see lib/suite.ts) and
 * add one line to SUITES below.
 */
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { stopAll } from './lib/processes.ts';
import type { BenchOptions, Suite } from './lib/suite.ts';

/** Suite name → its module, loaded only when chosen. The first entry is the default. */
const SUITES: Record<string, () => Promise<Suite>> = {
  proxy: async () => (await import('./proxy/suite.ts')).suite,
  hedge: async () => (await import('./hedge/suite.ts')).suite,
  multiplex: async () => (await import('./multiplex/suite.ts')).suite,
  defer: async () => (await import('./defer/suite.ts')).suite,
  tls: async () => (await import('./tls/suite.ts')).suite,
};

// Warm-up 8 s: Manifold's first 4 s of load cost it twice its steady state (V8 compiling its code),
// the minimal proxy's first 2 s; rounds are meant to measure the steady state of each.
const DEFAULTS = { duration: 10, warmup: 8, connections: 50, rounds: 3 };
const QUICK = { duration: 2, warmup: 1, rounds: 1 };

const COMMON = {
  duration: { type: 'string', short: 'd' },
  warmup: { type: 'string' },
  connections: { type: 'string', short: 'c' },
  rounds: { type: 'string', short: 'r' },
  quick: { type: 'boolean', short: 'q' },
  only: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsOptionsConfig;

const USAGE = `Usage: npm run bench -- [suite] [options]

Suites: ${Object.keys(SUITES).join(', ')} (default ${Object.keys(SUITES)[0]})

Options:
  -d, --duration S      seconds per measurement (default ${DEFAULTS.duration}; --quick ${QUICK.duration})
      --warmup S        seconds of warm-up load per contestant (default ${DEFAULTS.warmup}; --quick ${QUICK.warmup})
  -c, --connections N   concurrent keep-alive connections (default ${DEFAULTS.connections})
  -r, --rounds N        interleaved rounds; results are medians (default ${DEFAULTS.rounds}; --quick ${QUICK.rounds})
  -q, --quick           a smoke run: one round, 1 s warm-up, 2 s measurements (explicit flags still win)
      --only A,B        only these contestants (e.g. direct,manifold,undici)
  -h, --help            show this help

Suite options:
  proxy --baseline DIR  also run Manifold (defaults) from another checkout DIR as
                        manifold@base, e.g. git archive main | tar -x -C DIR, then link
                        DIR/node_modules to this node_modules: a change measured in one run
  hedge --rate N        requests per second of the open-loop load
  tls --h2-sessions N   HTTP/2 sessions of the h2 load (default 5)
      --h2-streams N    concurrent streams per session (default 10)
      --handshake-concurrency N
                        loops of new TLS connection + 1 request (default 16)

The last line of output is a JSON summary. Exit code 1 when a result is invalid (an answer
other than 200, a socket error or timeout) or the run failed.
`;

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function number(
  name: string,
  raw: string | undefined,
  fallback: number,
  integer: boolean,
  min: number,
): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n)))
    fail(`--${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, not "${raw}"`);
  return n;
}

async function main(argv: string[]): Promise<void> {
  // First pass only to find the suite, whose own flags join the strict second pass.
  const loose = parseArgs({ args: argv, options: COMMON, allowPositionals: true, strict: false });
  // A suite's own flag with a separate value (`--baseline DIR`) looks like a positional here.
  const first = loose.positionals[0];
  const name = first !== undefined && first in SUITES ? first : Object.keys(SUITES)[0];
  if (loose.values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const load = SUITES[name];
  if (load === undefined) fail(`unknown suite "${name}"; suites: ${Object.keys(SUITES).join(', ')}`);
  const suite = await load();

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...suite.options, ...COMMON },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    fail(`${(err as Error).message}\n\n${USAGE}`);
  }
  if (parsed.positionals.length > 1) fail(`one suite at a time, not "${parsed.positionals.join(' ')}"`);
  const given = parsed.positionals[0];
  if (given !== undefined && given !== name)
    fail(`unknown suite "${given}"; suites: ${Object.keys(SUITES).join(', ')}`);
  const v = parsed.values;
  const quick = v.quick === true;
  const base = quick ? { ...DEFAULTS, ...QUICK } : DEFAULTS;
  const options: BenchOptions = {
    duration: number('duration', v.duration as string | undefined, base.duration, false, 1),
    warmup: number('warmup', v.warmup as string | undefined, base.warmup, false, 0),
    connections: number('connections', v.connections as string | undefined, base.connections, true, 1),
    rounds: number('rounds', v.rounds as string | undefined, base.rounds, true, 1),
    quick,
    only: typeof v.only === 'string' ? v.only.split(',').filter(Boolean) : [],
    extra: Object.fromEntries(
      Object.keys(suite.options ?? {}).map((k) => [k, v[k] as string | boolean | undefined]),
    ),
  };

  const summary = await suite.run(options);
  const { extra: _extra, ...shown } = options;
  process.stdout.write(`${JSON.stringify({ suite: name, options: shown, ...summary })}\n`);
  if (summary.valid === false) process.exitCode = 1;
}

try {
  await main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  await stopAll();
  process.exitCode = 1;
}
// Child processes are stopped by now; do not wait for stray sockets or timers.
process.exit();
