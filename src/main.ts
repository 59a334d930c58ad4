/**
 * CLI entry: `manifold [--config FILE] [flags]` runs the gateway; `manifold validate --config FILE`
 * prints every config problem and exits non-zero when there is one.
 */
import { closeSync, openSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { startAdmin } from './admin/app.ts';
import { localFigures } from './admin/scope.ts';
import { startMetricsServer } from './admin/metrics-server.ts';
import { type DataPlane, localPlane, Manager } from './cluster/manager.ts';
import { StartInterrupted, startPrimary } from './cluster/primary.ts';
import { ClusterStore } from './cluster/store.ts';
import { compileCluster, instanceId } from './config/cluster.ts';
import { startRuntime } from './cluster/runtime.ts';
import { loadAsyncproxy } from './compat/asyncproxy.ts';
import {
  BRP_BASE,
  BRP_SOURCE,
  type BrpStart,
  type LogTarget,
  looksLikeBrp,
  parseBrp,
  quickOverrides,
} from './compat/balancing-reverse-proxy.ts';
import { L7R_BASE, L7R_SOURCE, L7R_STATS_INTERVAL_MS, looksLikeLayer7Router, parseLayer7Router } from './compat/layer7router.ts';
import { OCTOPLEX_BASE, OCTOPLEX_SOURCE, octoplexOverrides } from './compat/octoplex.ts';
import { pino } from 'pino';
import {
  ConfigError,
  formatProblem,
  type LoadedConfig,
  loadConfigFile,
  loadConfigText,
  type Override,
  scalar,
} from './config/load.ts';
import { tuneGc } from './lib/gc.ts';
import { parseDuration } from './lib/units.ts';
import { listenersOf } from './config/listeners.ts';
import { WELDR_BASE, WELDR_SOURCE } from './compat/weldr.ts';
import { startDeliveryHost, withDeliveries } from './cluster/delivery-host.ts';
import { IMPORT_USAGE, queueImportCommand, UsageError } from './defer/import.ts';
import type { Queue } from './defer/queue.ts';
import { createLogger } from './observability/logger.ts';
import { type TextDestination, textDestination } from './server/text-log.ts';
import { Metrics } from './observability/metrics.ts';
import { liveTotals, startLiveLine } from './observability/live-line.ts';
import { VERSION } from './version.ts';

export const USAGE = `Usage:
  manifold [--config FILE] [options]      run the gateway
  manifold validate --config FILE         check a config file, print every problem
  manifold --endpoints URL,URL [options]  quick mode: no file, one pool, one catch-all route
  manifold --defer-to URL [options]       quick mode: answer 202 now, deliver to URL later
  manifold --multiplex [--allow LIST]     quick mode: Octoplex (POST /multiplex on 0.0.0.0:8080)
  manifold --pool-api [options]           quick mode (Weldr): empty pool managed by the admin API
  manifold [--asyncproxy] [--config config.yaml]
                                          asyncproxy's config.yaml and env variables (found by its keys)
  manifold queue import --from asyncproxy [--url CONN] [--table T] [--batch N] [--limit N]
                                          move the requests waiting in asyncproxy's proxy_requests
                                          into Manifold's queue
  manifold -endpoints=URLs [-fanout] ...  balancing-reverse-proxy's own command line (its flags: manifold -help)
  manifold -backend_host H -backend_port N [-listen_port N] [-client_base_ip A.B.C -client_start_ip N -client_end_ip N] ...
                                          Layer7Router's own command line: a tcp listener to one backend

Options:
  -c, --config FILE      YAML config file (default: $MANIFOLD_CONFIG)
  -p, --port N           listen port (overrides listen.port)
      --host ADDR        listen address (overrides listen.host)
  -w, --workers N|auto   worker processes; 0 or 1 = a single process (overrides workers)
      --log-level LEVEL  fatal|error|warn|info|debug|trace|silent (overrides log.level)
      --log-file PATH    append the logs to PATH instead of stdout (one process only)
      --stats-interval D log the live line every D (e.g. 2s): sessions/s, total, current,
                         bytes and KB/s each way, every worker summed (needs metrics.enabled)
  -h, --help             show this help
  -v, --version          print the version

Quick mode (no config file; one process unless --workers is given):
  -e, --endpoints URLS   comma-separated targets, e.g. http://a/apis,http://b/public-apis,
                         tried in the order given (failover): the next only after the previous
                         failed or answered with a status that is not accepted
  -f, --fanout           send every request to all endpoints at once; the first accepted
                         answer is returned, the others are aborted
  -t, --terminal-responses LIST
                         accepted statuses (default 100,200,300,400): a class (400 = 400-499),
                         a code (429) or a range (500-503); any other answer means "try the next"
      --defer-to URL     answer every request 202 {"id"} once it is stored (./data/queue.db)
                         and deliver it to URL with the same path and query, retried with
                         backoff; tune it with MANIFOLD_ROUTES__0__DEFER__* and MANIFOLD_QUEUE__*
      --multiplex        Octoplex's POST /multiplex, GET / and /healthz; public targets only
      --allow LIST       with --multiplex: CIDRs and names also allowed, e.g. 127.0.0.0/8,10.1.0.0/16
      --pool-api         Weldr's start: data on 0.0.0.0:8080, admin on 127.0.0.1:8687
                         (POST /servers, DELETE /servers/:ip/:port), every target health-checked
      --asyncproxy       asyncproxy's configuration: ./config.yaml (or --config) if there is one,
                         its env variables (PROXY_REMOTE_URL, DB_CONNECTION_STRING, …) and defaults
      --admin-host ADDR  admin API address (overrides admin.host; off loopback needs a token)
      --admin-port N     admin API port (overrides admin.port)
      --admin-token T    admin API token (overrides admin.token; or MANIFOLD_ADMIN_TOKEN)

Environment:
  MANIFOLD_CONFIG        config file when --config is not given
  MANIFOLD_<KEY>__<SUB>  overrides a config key, e.g. MANIFOLD_LISTEN__PORT=8081,
                         MANIFOLD_LOG__LEVEL=debug (flags win over env, env over the file)
  \${VAR} and \${VAR:-default} in the file are replaced from the environment.
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  port: { type: 'string', short: 'p' },
  host: { type: 'string' },
  workers: { type: 'string', short: 'w' },
  'log-level': { type: 'string' },
  'log-file': { type: 'string' },
  'stats-interval': { type: 'string' },
  endpoints: { type: 'string', short: 'e' },
  fanout: { type: 'boolean', short: 'f' },
  'terminal-responses': { type: 'string', short: 't' },
  'defer-to': { type: 'string' },
  asyncproxy: { type: 'boolean' },
  multiplex: { type: 'boolean' },
  allow: { type: 'string' },
  'pool-api': { type: 'boolean' },
  'admin-host': { type: 'string' },
  'admin-port': { type: 'string' },
  'admin-token': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

/** Flag → config key; values are read as YAML scalars so `--port 8081` is a number. */
const FLAG_KEYS: Record<string, Array<string>> = {
  port: ['listen', 'port'],
  host: ['listen', 'host'],
  workers: ['workers'],
  'log-level': ['log', 'level'],
  'admin-host': ['admin', 'host'],
  'admin-port': ['admin', 'port'],
  'admin-token': ['admin', 'token'],
};

async function freePort(host: string): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, host, () => resolve());
  });
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** A port chosen for each listener configured with port 0 (index -1: the `listen` shorthand). */
async function freePorts(config: LoadedConfig['config']): Promise<Array<{ index: number; port: number }>> {
  if (config.listeners === undefined)
    return config.listen.port === 0 ? [{ index: -1, port: await freePort(config.listen.host) }] : [];
  const out: Array<{ index: number; port: number }> = [];
  for (const [index, l] of config.listeners.entries())
    if (l.port === 0) out.push({ index, port: await freePort(l.host) });
  return out;
}

function pinPorts(config: LoadedConfig['config'], pins: ReadonlyArray<{ index: number; port: number }>): void {
  for (const { index, port } of pins) {
    if (index === -1) {
      if (config.listen.port === 0) config.listen.port = port;
    } else if (config.listeners?.[index]?.port === 0) config.listeners[index].port = port;
  }
  if (config.listeners !== undefined) config.listen.port = config.listeners[0].port;
}

function fail(message: string, code = 2): never {
  process.stderr.write(`manifold: ${message}\n`);
  process.exit(code);
}

/**
 * Quick mode (issue 4), for users of balancing-reverse-proxy: the config is built in memory. The
 * base (one process, no admin API) may be overridden by env and flags like a file; the pool and
 * route come from the flags (src/compat/balancing-reverse-proxy.ts), so every problem names the
 * flag it came from.
 */
const QUICK_BASE = 'workers: 0\nadmin: { enabled: false }\n';
const QUICK_SOURCE = 'quick mode';

/**
 * `--defer-to URL` (issue 6), asyncproxy's mode. The route is part of the base rather than a
 * flag override, so env overrides reach it like asyncproxy's env settings do:
 * MANIFOLD_ROUTES__0__DEFER__RATE=100/s, MANIFOLD_ROUTES__0__DEFER__STATUS=200 (README).
 */
const QUICK_DEFER_BASE = `${QUICK_BASE}routes:
  - id: deferred
    match: {}
    defer: { pool: remote, host: target }
`;

/** The flags that set a config key (FLAG_KEYS), as overrides applied last. */
function flagOverrides(values: Record<string, unknown>): Override[] {
  const out: Override[] = [];
  for (const [flag, path] of Object.entries(FLAG_KEYS)) {
    const v = values[flag];
    if (typeof v === 'string') out.push({ path, value: scalar(v), source: `flag --${flag}` });
  }
  return out;
}

function load(values: Record<string, unknown>): LoadedConfig {
  if (values.multiplex === true) return loadOctoplex(values);
  if (values.allow !== undefined) fail('--allow needs --multiplex (quick mode)');
  const quick = typeof values.endpoints === 'string';
  const deferTo = typeof values['defer-to'] === 'string';
  const poolApi = values['pool-api'] === true;
  if (poolApi && (quick || deferTo || values.config !== undefined))
    fail('--pool-api (quick mode) excludes --config, --endpoints and --defer-to');
  if (deferTo && (quick || values.config !== undefined))
    fail('--defer-to (quick mode) excludes --config and --endpoints');
  if (quick && values.config !== undefined) fail('--endpoints (quick mode) and --config exclude each other');
  if (!quick && (values.fanout !== undefined || values['terminal-responses'] !== undefined))
    fail('--fanout and --terminal-responses need --endpoints (quick mode)');
  const others = quick || deferTo || poolApi;
  if (values.asyncproxy === true && others)
    fail('--asyncproxy excludes --endpoints, --defer-to and --pool-api (quick modes)');
  if (!others) {
    // Issue 13: asyncproxy's config.yaml (found by its keys) and its environment variables.
    const file = (values.config as string | undefined) ?? process.env.MANIFOLD_CONFIG;
    const ap = loadAsyncproxy({ forced: values.asyncproxy === true, file, overrides: flagOverrides(values) });
    if (ap !== null) return ap;
  }
  const file =
    poolApi ? WELDR_SOURCE : quick || deferTo ? QUICK_SOURCE : ((values.config as string | undefined) ?? process.env.MANIFOLD_CONFIG);
  if (!file) fail(`no config file: pass --config FILE or set MANIFOLD_CONFIG\n\n${USAGE}`);
  const overrides: Override[] = quick
    ? quickOverrides(
        String(values.endpoints),
        values.fanout === true,
        values['terminal-responses'] as string | undefined,
        '--',
      )
    : [];
  if (deferTo)
    overrides.push({
      path: ['pools', 'remote', 'targets'],
      value: [values['defer-to']],
      source: 'flag --defer-to',
    });
  overrides.push(...flagOverrides(values));
  if (deferTo) return loadConfigText(QUICK_DEFER_BASE, file, { overrides });
  if (poolApi) return loadConfigText(WELDR_BASE, file, { overrides });
  return quick ? loadConfigText(QUICK_BASE, file, { overrides }) : loadConfigFile(file, { overrides });
}

/** `--multiplex` (issue 12): Octoplex, translated by src/compat/octoplex.ts. */
function loadOctoplex(values: Record<string, unknown>): LoadedConfig {
  const others = ['config', 'endpoints', 'defer-to', 'fanout', 'terminal-responses'];
  if (others.some((flag) => values[flag] !== undefined))
    fail('--multiplex (quick mode) excludes --config, --endpoints, --defer-to and their flags');
  const overrides = [...octoplexOverrides(values.allow as string | undefined), ...flagOverrides(values)];
  return loadConfigText(OCTOPLEX_BASE, OCTOPLEX_SOURCE, { overrides });
}

/** `manifold queue import --from asyncproxy` (issue 13), in src/defer/import.ts. */
async function queueCommand(argv: string[]): Promise<void> {
  try {
    await queueImportCommand(argv, (values) => load(values), process.stdout);
  } catch (err) {
    if (err instanceof UsageError) fail(`${err.message}\n\n${IMPORT_USAGE}`);
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.problems.map(formatProblem).join('\n')}\n`);
      process.exit(1);
    }
    fail(`queue import failed: ${(err as Error).message}`, 1);
  }
}

/**
 * Where the log goes: stdout, stderr (the seed's `-log-file stderr`) or a file appended to
 * (`--log-file`; SonicBoom, asynchronous). `log.format: text` rewrites pino's lines on the way
 * (issue 13); the returned `text` gets the runtime's snapshot for endpoint indexes.
 */
function logDestination(
  to: LogTarget,
  log: LoadedConfig['config']['log'],
): { dest: NodeJS.WritableStream | undefined; text: TextDestination | null } {
  // Text lines are written synchronously, in order, as Go's log writes them (for people, not load).
  const sync = log.format === 'text';
  let raw: unknown;
  if (to.kind === 'file') raw = pino.destination({ dest: to.path, append: true, mkdir: true, sync });
  else if (to.kind === 'stderr') raw = pino.destination({ dest: 2, sync });
  const text = textDestination(log, raw as NodeJS.WritableStream | undefined);
  return { dest: (text ?? raw) as NodeJS.WritableStream | undefined, text };
}

/** What the command line adds to a run beyond the config (issue 13: the seed's start and stop lines). */
interface RunOptions {
  logTo: LogTarget;
  stopLine?: string | null;
  startLines?: string[];
  /** `--stats-interval` (issue 17): the live line every this many ms; 0 = never. */
  statsIntervalMs?: number;
}

async function run(loaded: LoadedConfig, opts: RunOptions, reread: () => LoadedConfig): Promise<void> {
  const workers = loaded.config.workers === 'auto' ? availableParallelism() : loaded.config.workers;
  // Worker processes create their own logger on stdout, so a file is for one process only.
  if (opts.logTo.kind !== 'stdout' && workers > 1)
    fail('--log-file needs a single process (--workers 0); workers would still log to stdout');
  const destination = logDestination(opts.logTo, loaded.config.log);
  const log = createLogger(loaded.config.log.level, destination.dest);
  for (const line of opts.startLines ?? []) log.info(line);
  // Issue 7: this process's metrics — the control plane's, the deliveries', and with one
  // process also the data plane's; workers make their own and the Manager sums them.
  const metrics = loaded.config.metrics.enabled ? new Metrics({ version: VERSION }) : null;
  // Signals are taken from the first moment: one that arrives while the gateway is still
  // starting (workers forking, admin API binding) waits for the start to finish and then
  // drains, instead of killing the primary with requests in flight.
  let stopping: string | null = null;
  let stopNow: ((signal: string) => void) | null = null;
  const onSignal = (signal: string) => {
    if (stopping !== null) {
      // Issue 15: a second signal is the operator saying "now": no more grace.
      log.warn({ signal }, 'second signal during the drain: exiting at once');
      log.flush();
      process.exit(1);
    }
    stopping = signal;
    stopNow?.(signal);
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  // Every worker binds its own socket, so "any free port" must be chosen once, here, for every
  // listener (issue 14) — and kept on reload, where the file still says 0.
  const pins = workers > 1 ? await freePorts(loaded.config) : [];
  pinPorts(loaded.config, pins);
  // The control plane (issue 3): config file + admin changes, health checks, admin API.
  const manager = new Manager({
    loaded,
    log,
    metrics,
    reload: () => {
      const next = reread();
      pinPorts(next.config, pins);
      return next;
    },
  });
  await manager.restore();
  // Issue 16: with `cluster.store`, the shared overlay is served from the first request on
  // (or, PostgreSQL away, the file's config until it returns).
  const clusterSpec = compileCluster(loaded.config, []);
  let queue: (() => Queue | null) | undefined;
  let adminAddress: string | null = null;
  const store =
    clusterSpec === null
      ? null
      : new ClusterStore({
          spec: clusterSpec,
          id: instanceId(clusterSpec, loaded.config),
          host: hostname(),
          log,
          onChange: (stored) => manager.adopt(stored),
          // Issue 16 item 3: the figures `?scope=cluster` sums, published with every heartbeat.
          report: async () => ({
            config_version: manager.version,
            overlay_version: manager.storeVersion,
            report: { ...(await localFigures(manager, () => queue?.() ?? null)), admin: adminAddress },
          }),
        });
  if (store !== null) await manager.join(store);
  // Issue 16 item 4: defer `rate` and `concurrency` are the cluster's, split evenly between the
  // instances that are up (the registry), so N gateways deliver at the configured rate.
  const share = store === null ? undefined : () => 1 / store.peers;
  const config = manager.config;
  let shutdown: () => Promise<void>;
  let plane: DataPlane;
  if (workers <= 1) {
    const runtime = await startRuntime(config, log, { metrics, share });
    log.info({ port: runtime.port, listeners: runtime.ports, workers: 0, config: loaded.file }, 'manifold listening');
    shutdown = () => runtime.close();
    if (destination.text !== null) destination.text.view = () => runtime.pipeline.snapshot;
    plane = localPlane(runtime);
    queue = () => runtime.defer.queue;
  } else {
    // Issue 6: workers accept deferred requests, the primary delivers them (it opens the
    // store first, so the workers find it created).
    const deliveries = await startDeliveryHost(config, log, metrics, share);
    const primary = startPrimary(config, workers, log);
    const grace = parseDuration(config.shutdown.grace);
    shutdown = async () => {
      await Promise.all([primary.shutdown(), deliveries.close(grace)]);
    };
    plane = withDeliveries(primary, deliveries);
    queue = () => deliveries.service.queue;
    try {
      const port = await primary.ready;
      const listeners = Object.fromEntries(listenersOf(config).map((l) => [l.name, l.port]));
      log.info({ port, listeners, workers, config: loaded.file }, 'manifold listening');
    } catch (err) {
      await shutdown();
      if (err instanceof StartInterrupted) {
        // The stop the operator asked for, before the start completed: a clean exit.
        log.info({ signal: stopping }, 'stopped during start');
        log.flush();
        process.exit(0);
      }
      log.flush();
      fail(`could not start: ${(err as Error).message}`, 1);
    }
  }
  await manager.start(plane);
  // Issue 17: Layer7Router's live line, from the metrics summed over every process.
  const stopLive =
    (opts.statsIntervalMs ?? 0) > 0
      ? startLiveLine(
          async () => liveTotals((await (await manager.metrics())?.getMetricsAsJSON()) ?? []),
          log,
          opts.statsIntervalMs!,
        )
      : null;
  // The admin API is the way to change pools, not the data plane: when its port is taken the
  // gateway keeps serving and says so loudly, rather than refusing traffic.
  const admin = config.admin.enabled
    ? await startAdmin(manager, log, { queue, draining: () => stopping !== null }).catch((err: Error) => {
        log.error(
          { err: err.message, host: config.admin.host, port: config.admin.port },
          'admin API could not start; serving without it',
        );
        return null;
      })
    : null;
  if (admin !== null) adminAddress = `${config.admin.host}:${admin.port}`;
  // Scrapers without the admin token get their own port; like the admin API, a port that is
  // taken is logged and the gateway serves on.
  const metricsServer =
    config.metrics.enabled && config.metrics.port !== null
      ? await startMetricsServer(manager, log).catch((err: Error) => {
          log.error(
            { err: err.message, host: config.metrics.host, port: config.metrics.port },
            'metrics port could not start; metrics stay on the admin API',
          );
          return null;
        })
      : null;
  const stopData = shutdown;
  // The metrics port and health checks stop before the data plane drains; the admin API stays
  // up until the drain is over, so `GET /ready` answers 503 to load balancers meanwhile.
  shutdown = async () => {
    stopLive?.();
    await metricsServer?.close();
    await store?.close();
    await manager.close();
    await stopData();
    await admin?.close();
  };
  // SIGHUP re-reads the config file; a refusal is logged by the manager and changes nothing.
  process.on('SIGHUP', () => void manager.reload().catch(() => {}));
  const stop = (signal: string) => {
    log.info({ signal }, 'draining');
    shutdown().then(
      () => {
        log.info('stopped');
        log.flush();
        process.exit(0);
      },
      (err) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  stopNow = stop;
  if (stopping !== null) stop(stopping);
  // `shutdown.after` (issue 13, the seed's -stop-after): the same drain as a signal, then exit 0.
  const after = parseDuration(config.shutdown.after);
  if (after > 0) {
    setTimeout(() => {
      if (stopping !== null) return;
      if (opts.stopLine) process.stdout.write(`${opts.stopLine}\n`);
      else log.info({ after: config.shutdown.after }, 'stopping: shutdown.after has passed');
      onSignal('shutdown.after');
    }, after);
  }
}

/** Loads a config; a problem is printed with where it came from, and the process exits 1. */
function loadOrExit(load: () => LoadedConfig): LoadedConfig {
  try {
    return load();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.problems.map(formatProblem).join('\n')}\n`);
    process.stderr.write(
      `manifold: ${err.problems.length} config problem${err.problems.length > 1 ? 's' : ''}\n`,
    );
    process.exit(1);
  }
}

/**
 * balancing-reverse-proxy's own command line (issue 13): its grammar, its usage and exit 1 on
 * anything wrong, its start-up and stop lines; the rest is a quick-mode run.
 */
async function mainBrp(argv: string[]): Promise<void> {
  const parsed = parseBrp(argv);
  if ('error' in parsed) {
    process.stderr.write(parsed.error);
    process.exit(1);
  }
  const start: BrpStart = parsed;
  const load = () => loadConfigText(BRP_BASE, BRP_SOURCE, { overrides: start.overrides });
  const loaded = loadOrExit(load);
  // The seed opens its log file before anything else and stops when it cannot.
  if (start.logTo.kind === 'file') {
    try {
      closeSync(openSync(start.logTo.path, 'a'));
    } catch (err) {
      fail(`flag -log-file: ${(err as Error).message}`, 1);
    }
  }
  try {
    await run(loaded, { logTo: start.logTo, stopLine: start.stopLine, startLines: start.startLines }, load);
  } catch (err) {
    fail(`could not start: ${(err as Error).message}`, 1);
  }
}

/**
 * Layer7Router's own command line (issue 17): args4j's grammar and errors (exit 1), its
 * `Options [...]` start line and its live line every 2 s; the rest is a tcp listener run.
 */
async function mainLayer7Router(argv: string[]): Promise<void> {
  const parsed = parseLayer7Router(argv);
  if ('error' in parsed) {
    process.stderr.write(`Layer7Router: ${parsed.error}`);
    process.exit(1);
  }
  const start = parsed;
  const load = () => loadConfigText(L7R_BASE, L7R_SOURCE, { overrides: start.overrides });
  const loaded = loadOrExit(load);
  try {
    await run(loaded, { logTo: { kind: 'stdout' }, startLines: start.startLines, statsIntervalMs: L7R_STATS_INTERVAL_MS }, load);
  } catch (err) {
    fail(`could not start: ${(err as Error).message}`, 1);
  }
}

/** `--stats-interval D` in milliseconds (0 when absent); a bad value or no metrics is a usage error. */
function statsInterval(value: string | undefined, loaded: LoadedConfig): number {
  if (value === undefined) return 0;
  let ms: number;
  try {
    ms = parseDuration(/^\d+$/.test(value) ? Number(value) : value);
  } catch {
    fail(`--stats-interval: not a duration: ${JSON.stringify(value)} (use e.g. 2s or 500ms)`);
  }
  if (ms > 0 && !loaded.config.metrics.enabled)
    fail('--stats-interval reads the metrics: it needs metrics.enabled (it is false in the config)');
  return ms;
}

export async function main(argv: string[]): Promise<void> {
  tuneGc();
  if (argv[0] === 'queue') return queueCommand(argv.slice(1));
  // Before balancing-reverse-proxy's test, which would take any single-dash word for its own.
  if (looksLikeLayer7Router(argv)) return mainLayer7Router(argv);
  if (looksLikeBrp(argv)) return mainBrp(argv);
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    fail(`${(err as Error).message}\n\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (values.version) {
    process.stdout.write(`manifold ${VERSION}\n`);
    return;
  }
  const command = positionals[0] ?? 'run';
  if (positionals.length > 1 || (command !== 'run' && command !== 'validate')) {
    fail(`unknown command "${positionals.join(' ')}"\n\n${USAGE}`);
  }
  const loaded = loadOrExit(() => load(values));
  if (command === 'validate') {
    process.stdout.write(
      `${loaded.file}: ok (${loaded.compiled.routes.length} routes, ${loaded.compiled.pools.length} pools)\n`,
    );
    return;
  }
  try {
    const logFile = values['log-file'];
    const logTo: LogTarget = logFile === undefined ? { kind: 'stdout' } : { kind: 'file', path: logFile };
    await run(loaded, { logTo, statsIntervalMs: statsInterval(values['stats-interval'], loaded) }, () => load(values));
  } catch (err) {
    fail(`could not start: ${(err as Error).message}`, 1);
  }
}

if (import.meta.main) await main(process.argv.slice(2));
