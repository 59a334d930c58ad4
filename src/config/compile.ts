/**
 * Config → CompiledConfig: pure (no sockets, no timers), so it can run in the primary to
 * validate and in every worker to build the same result. Durations and sizes are parsed,
 * matchers compiled and cross-references (route → pool) resolved here, once.
 */
import { createHash } from 'node:crypto';
import {
  compileMultiplexOptions,
  type MultiplexAction,
  MultiplexConfigError,
  multiplexSchema,
} from '../multiplex/schema.ts';
import { compileCluster } from './cluster.ts';
import { compileDefer, compileQueue, type DeferAction } from '../defer/spec.ts';
import { compileMatch, type MatchConfig } from '../routing/matcher.ts';
import { compileConnect, type ConnectAction } from '../tunnel/spec.ts';
import { compileTcp, type TcpSpec } from '../tcp/spec.ts';
import { checkListeners, listenersOf } from './listeners.ts';
import type { Route } from '../routing/route.ts';
import { compileStrategy } from '../strategy/spec.ts';
import { compileForwarding, type Forwarding, type HostMode } from '../proxy/headers.ts';
import type { ExhaustedAnswer } from '../strategy/exhausted.ts';
import type { StrategySpec } from '../strategy/types.ts';
import { compilePool, type PoolSpec } from '../upstream/spec.ts';
import type { AdminConfig, Config, RouteConfig } from './schema.ts';
import { type CompileProblem, unknownPool } from '../lib/problem.ts';
import { parseDuration, parseSize } from '../lib/units.ts';

export type RouteAction =
  | {
      kind: 'proxy';
      pool: string;
      host: HostMode;
      stripPrefix: string | null;
      /** How attempts are spent (issue 4), compiled by strategy/spec.ts. */
      strategy: StrategySpec;
      /** Add `x-manifold-target` to the response. */
      targetHeader: boolean;
      /** The answer when no attempt is accepted (issue 13); null = relay the last / 502-504. */
      exhausted: ExhaustedAnswer | null;
    }
  | {
      kind: 'respond';
      status: number;
      body: Buffer;
      headers: Record<string, string>;
      /** A readiness answer: 503 NOT_READY once the drain starts (issue 15). */
      ready: boolean;
    }
  /** Store the request, answer at once, deliver it later (issue 6; src/defer/). */
  | DeferAction
  /** Answer with a batch (issue 5; src/multiplex/). */
  | MultiplexAction
  /** Tunnel a CONNECT request (issue 17; src/tunnel/connect.ts). */
  | ConnectAction;

/** A route as served: its action is one of the five kinds (routing/route.ts has the rest). */
export type CompiledRoute = Route<RouteAction>;

export interface CompiledConfig {
  routes: CompiledRoute[];
  pools: PoolSpec[];
  /** Issue 17: the compiled `tcp` block of each `mode: tcp` listener, by listener name. */
  tcp: Map<string, TcpSpec>;
}

const LOOPBACK = /^(127(\.\d{1,3}){3}|::1|\[::1\]|localhost)$/i;

/** The admin API changes where traffic goes: off loopback it needs a token (issue 3). */
function checkAdmin(admin: AdminConfig | undefined, problems: CompileProblem[]): void {
  if (!admin?.enabled || admin.token || LOOPBACK.test(admin.host)) return;
  problems.push({
    path: ['admin', 'host'],
    message: `binding the admin API to non-loopback "${admin.host}" requires admin.token`,
  });
}

/** Paths the admin API serves itself; `metrics.path` must not shadow one (issue 7). */
const ADMIN_PATHS = ['/pools', '/servers', '/stats', '/config', '/queue', '/dashboard', '/cluster'];

function checkMetrics(config: Config, problems: CompileProblem[]): void {
  const { path, port } = config.metrics;
  const base = `/${path.split('/')[1]}`;
  if (path === '/' || ADMIN_PATHS.includes(base))
    problems.push({
      path: ['metrics', 'path'],
      message: `"${path}" is an admin API path; use e.g. /metrics`,
    });
  if (port !== null && port !== 0) {
    const listener = listenersOf(config).find((l) => l.port === port);
    if (listener !== undefined)
      problems.push({
        path: ['metrics', 'port'],
        message: `${port} is ${config.listeners === undefined ? 'listen.port' : `listener "${listener.name}"'s port`} already`,
      });
    else if (config.admin.enabled && port === config.admin.port)
      problems.push({ path: ['metrics', 'port'], message: `${port} is admin.port already` });
  }
}

/**
 * node:http refuses a `headersTimeout` longer than a non-zero `requestTimeout` (a RangeError at
 * listen): said here, with the keys, instead.
 */
function checkLimits(config: Config, problems: CompileProblem[]): void {
  const l = config.limits;
  if (l === undefined) return;
  const headers = parseDuration(l.headers_timeout);
  const request = parseDuration(l.request_timeout);
  if (request > 0 && headers > request)
    problems.push({
      path: ['limits', 'headers_timeout'],
      message: `${l.headers_timeout} is longer than limits.request_timeout (${l.request_timeout}): the whole request must not be due before its headers`,
    });
}

/** The keys of a route that name its action; a route has exactly one. */
export const ACTION_KEYS = ['proxy', 'respond', 'multiplex', 'defer', 'connect'] as const;

const MULTIPLEX_KEYS = Object.keys(multiplexSchema.properties);

/** `routes[2].multiplex` + `.allow[1]` → ['routes', 2, 'multiplex', 'allow', 1]. */
function keyPath(base: Array<string | number>, prefix: string, path: string): Array<string | number> {
  const out = [...base];
  for (const m of path.slice(prefix.length).matchAll(/\.([^.[]+)|\[(\d+)\]/g)) {
    out.push(m[1] ?? Number(m[2]));
  }
  return out;
}

function compileMultiplex(
  raw: NonNullable<RouteConfig['multiplex']>,
  index: number,
  problems: CompileProblem[],
): RouteAction {
  const base = ['routes', index, 'multiplex'];
  const prefix = `routes[${index}].multiplex`;
  // Schema order, not the file's: the same options always give the same key.
  const key = JSON.stringify(MULTIPLEX_KEYS.map((k) => raw[k as keyof typeof raw] ?? null));
  try {
    const options = compileMultiplexOptions(raw, prefix);
    // The PEM texts too: a renewed certificate (same path) gets a new handler on reload.
    const tls = options.tls === null ? '' : createHash('sha256').update(JSON.stringify(options.tls)).digest('base64url');
    return { kind: 'multiplex', options, key: key + tls };
  } catch (err) {
    if (!(err instanceof MultiplexConfigError)) throw err;
    problems.push({ path: keyPath(base, prefix, err.path), message: err.problem });
    // Never served: with a problem, compile() returns no config.
    return { kind: 'respond', status: 500, body: Buffer.alloc(0), headers: {}, ready: false };
  }
}

/**
 * Issue 17: how a CONNECT request matches. A connect route takes CONNECT requests only (its
 * method is CONNECT, given or not), and its `host` is matched against the requested authority's
 * host (`example.com` of `CONNECT example.com:443`); a CONNECT has no path, so `path` is refused.
 * Routes with any other action never take a CONNECT (the pipeline looks at connect routes only).
 */
function connectMatch(match: MatchConfig, index: number, problems: CompileProblem[]): MatchConfig {
  if (match.path !== undefined)
    problems.push({ path: ['routes', index, 'match', 'path'], message: 'a connect route matches no path (CONNECT names host:port only)' });
  if (match.methods !== undefined && !(match.methods.length === 1 && match.methods[0] === 'CONNECT'))
    problems.push({ path: ['routes', index, 'match', 'methods'], message: 'a connect route takes CONNECT only: leave methods out or give [CONNECT]' });
  return { ...match, methods: ['CONNECT'] };
}

function compileRoute(
  r: RouteConfig,
  index: number,
  config: Config,
  problems: CompileProblem[],
  forwarding: Forwarding,
): CompiledRoute {
  const actions = ACTION_KEYS.filter((k) => r[k] !== undefined);
  if (actions.length !== 1) {
    problems.push({
      path: ['routes', index],
      message: actions.length
        ? `has several actions (${actions.join(', ')}); give exactly one`
        : `needs an action: one of ${ACTION_KEYS.join(', ')}`,
    });
  }
  let action: RouteAction;
  if (r.proxy) {
    if (!Object.hasOwn(config.pools, r.proxy.pool))
      problems.push({ path: ['routes', index, 'proxy', 'pool'], message: unknownPool(r.proxy.pool, Object.keys(config.pools)) });
    const host = r.proxy.host;
    action = {
      kind: 'proxy',
      pool: r.proxy.pool,
      host: host === 'preserve' || host === 'target' ? host : { literal: host },
      stripPrefix: r.proxy.strip_prefix?.replace(/\/+$/, '') || null,
      strategy: compileStrategy(r.proxy, ['routes', index, 'proxy'], problems),
      targetHeader: r.proxy.target_header,
      exhausted: r.proxy.exhausted
        ? { status: r.proxy.exhausted.status, body: Buffer.from(r.proxy.exhausted.body) }
        : null,
    };
  } else if (r.multiplex) {
    action = compileMultiplex(r.multiplex, index, problems);
  } else if (r.defer) {
    if (!Object.hasOwn(config.pools, r.defer.pool))
      problems.push({ path: ['routes', index, 'defer', 'pool'], message: unknownPool(r.defer.pool, Object.keys(config.pools)) });
    const path = ['routes', index, 'defer'];
    action = { kind: 'defer', spec: compileDefer(r.defer, path, problems) };
  } else if (r.connect) {
    action = compileConnect(r.connect, ['routes', index, 'connect'], new Set(Object.keys(config.pools)), problems);
  } else {
    const s = r.respond ?? { status: 404, body: '', headers: {}, ready: false };
    action = { kind: 'respond', status: s.status, body: Buffer.from(s.body), headers: s.headers, ready: s.ready };
  }
  return {
    id: r.id ?? `route-${index}`,
    index,
    matches: compileMatch(r.connect ? connectMatch(r.match, index, problems) : r.match),
    listeners:
      r.match.listener === undefined
        ? null
        : new Set(Array.isArray(r.match.listener) ? r.match.listener : [r.match.listener]),
    action,
    timeoutMs: parseDuration(r.timeout),
    headersTimeoutMs: parseDuration(r.headers_timeout),
    idleTimeoutMs: parseDuration(r.idle_timeout),
    maxBodyBytes: r.max_body_bytes === null ? null : parseSize(r.max_body_bytes),
    tunnelIdleTimeoutMs: parseDuration(r.tunnel_idle_timeout),
    forwarding,
  };
}

export function compile(config: Config): { compiled?: CompiledConfig; problems: CompileProblem[] } {
  const problems: CompileProblem[] = [];
  const pools = Object.entries(config.pools).map(([name, p]) => compilePool(name, p, problems));
  const forwarding = compileForwarding(config.forwarding);
  const routes = config.routes.map((r, i) => compileRoute(r, i, config, problems, forwarding));
  checkAdmin(config.admin, problems);
  if (config.listen) checkListeners(config, problems);
  const tcp = new Map<string, TcpSpec>();
  if (config.listen) {
    const poolNames = new Set(Object.keys(config.pools));
    listenersOf(config).forEach((l, i) => {
      if (l.mode === 'tcp' && l.tcp !== undefined) tcp.set(l.name, compileTcp(l.tcp, ['listeners', i, 'tcp'], poolNames, problems));
    });
  }
  if (config.metrics) checkMetrics(config, problems);
  checkLimits(config, problems);
  if (config.queue) compileQueue(config.queue, problems);
  compileCluster(config, problems);
  const ids = new Map<string, number>();
  routes.forEach((r, i) => {
    const first = ids.get(r.id);
    if (first !== undefined)
      problems.push({ path: ['routes', i, 'id'], message: `duplicate id "${r.id}" (also routes[${first}])` });
    else ids.set(r.id, i);
    // `_none`, `_other`: metric label values of their own (observability/metrics.ts).
    if (r.id.startsWith('_'))
      problems.push({ path: ['routes', i, 'id'], message: 'ids starting with "_" are reserved' });
  });
  return problems.length > 0 ? { problems } : { compiled: { routes, pools, tcp }, problems };
}
