/**
 * Config → CompiledConfig: pure (no sockets, no timers), so it can run in the primary to
 * validate and in every worker to build the same result. Durations and sizes are parsed,
 * matchers compiled and cross-references (route → pool) resolved here, once.
 */
import {
  compileMultiplexOptions,
  type MultiplexOptions,
  MultiplexConfigError,
  multiplexSchema,
} from '../multiplex/schema.ts';
import { compileDefer, compileQueue, type DeferSpec } from '../defer/spec.ts';
import { compileMatch, type Matcher } from '../routing/matcher.ts';
import { compileStrategy } from '../strategy/spec.ts';
import { compileForwarding, type Forwarding, type HostMode } from '../proxy/headers.ts';
import type { ExhaustedAnswer } from '../strategy/exhausted.ts';
import type { StrategySpec } from '../strategy/types.ts';
import type { AdminConfig, Config, HealthConfig, PoolConfig, RouteConfig } from './schema.ts';
import { parseDuration, parseSize } from './units.ts';

export interface TargetSpec {
  /** Stable id used in logs and metrics: `host:port` plus the path prefix when there is one. */
  id: string;
  url: string;
  /** `http://host:port`, what undici connects to. */
  origin: string;
  /** Path prefix of the target URL without trailing slash ('' for none). */
  basePath: string;
  /** Host header value for `host: target`. */
  host: string;
  weight: number;
  /** Drained by an operator (admin API `PATCH … {"drain": true}`): never picked. */
  drain: boolean;
}

/** What the `hash` selector hashes (pool key `hash_key`). */
export type HashKey = { kind: 'client_ip' } | { kind: 'header' | 'cookie'; name: string };

/** Active health checks of a pool (key `health`), run by the primary. */
export interface HealthSpec {
  path: string;
  method: string;
  intervalMs: number;
  timeoutMs: number;
  /** Passing statuses as inclusive [low, high] ranges. */
  expect: Array<[number, number]>;
  fall: number;
  rise: number;
}

/** Outlier ejection of a pool (key `passive`), decided in each worker. */
export interface PassiveSpec {
  failures: number;
  ejectionMs: number;
  maxEjectionMs: number;
  maxEjectedPercent: number;
}

export interface PoolSpec {
  name: string;
  selector: PoolConfig['selector'];
  hashKey: HashKey;
  connections: number;
  connectTimeoutMs: number;
  keepAliveTimeoutMs: number;
  targets: TargetSpec[];
  health: HealthSpec | null;
  passive: PassiveSpec | null;
  /** Percent; below it the pool uses every target (panic). */
  panicThreshold: number;
}

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
  | { kind: 'defer'; spec: DeferSpec }
  | {
      kind: 'multiplex';
      /** Compiled once here; the runtime builds the route's live handler from them (issue 5). */
      options: MultiplexOptions;
      /** Equal keys mean equal options: a new snapshot then keeps the route's handler. */
      key: string;
    };

export interface CompiledRoute {
  id: string;
  index: number;
  matches: Matcher;
  action: RouteAction;
  /** 0 = no overall deadline. */
  timeoutMs: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  /** null = unlimited (streamed). */
  maxBodyBytes: number | null;
  /** An upgraded tunnel with no byte either way for this long is closed; 0 = never (issue 15). */
  tunnelIdleTimeoutMs: number;
  /** The top-level `forwarding` settings (Via pseudonym, loop limit, Forwarded), shared by every route. */
  forwarding: Forwarding;
}

export interface CompiledConfig {
  routes: CompiledRoute[];
  pools: PoolSpec[];
}

export interface CompileProblem {
  path: Array<string | number>;
  message: string;
}

export function targetSpec(
  entry: string | { url: string; weight?: number; id?: string; drain?: boolean },
): TargetSpec {
  const { url, weight = 1, id, drain = false } = typeof entry === 'string' ? { url: entry } : entry;
  const u = new URL(url);
  const basePath = u.pathname.replace(/\/+$/, '');
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  return {
    id: id ?? `${u.hostname}:${port}${basePath}`,
    url,
    origin: u.origin,
    basePath,
    host: u.host,
    weight,
    drain,
  };
}

export function compileHashKey(key: string): HashKey {
  if (key === 'client_ip') return { kind: 'client_ip' };
  const colon = key.indexOf(':');
  const kind = key.slice(0, colon) === 'cookie' ? 'cookie' : 'header';
  const name = key.slice(colon + 1);
  return { kind, name: kind === 'header' ? name.toLowerCase() : name };
}

/** `204` → [204, 204]; `200-399` → [200, 399]; `2xx` → [200, 299]. */
export function compileStatuses(list: ReadonlyArray<number | string>): Array<[number, number]> {
  return list.map((e) => {
    if (typeof e === 'number') return [e, e];
    if (e.endsWith('xx')) return [Number(e[0]) * 100, Number(e[0]) * 100 + 99];
    const [lo, hi] = e.split('-').map(Number);
    return [lo, hi];
  });
}

/** A check interval shorter than this would keep a CPU busy; tests use 50-100 ms. */
const MIN_HEALTH_INTERVAL_MS = 10;

function compileHealth(name: string, h: HealthConfig, problems: CompileProblem[]): HealthSpec {
  const spec: HealthSpec = {
    path: h.path,
    method: h.method,
    intervalMs: parseDuration(h.interval),
    timeoutMs: parseDuration(h.timeout),
    expect: compileStatuses(h.expect),
    fall: h.fall,
    rise: h.rise,
  };
  if (spec.intervalMs < MIN_HEALTH_INTERVAL_MS)
    problems.push({
      path: ['pools', name, 'health', 'interval'],
      message: `must be at least ${MIN_HEALTH_INTERVAL_MS}ms`,
    });
  if (spec.timeoutMs <= 0)
    problems.push({ path: ['pools', name, 'health', 'timeout'], message: 'must be more than 0' });
  spec.expect.forEach(([lo, hi], i) => {
    if (lo > hi)
      problems.push({ path: ['pools', name, 'health', 'expect', i], message: 'range is empty (low > high)' });
  });
  return spec;
}

function compilePool(name: string, p: PoolConfig, problems: CompileProblem[]): PoolSpec {
  const targets = p.targets.map(targetSpec);
  const ids = new Set<string>();
  targets.forEach((t, i) => {
    if (ids.has(t.id))
      problems.push({ path: ['pools', name, 'targets', i], message: `duplicate target "${t.id}"` });
    ids.add(t.id);
  });
  return {
    name,
    selector: p.selector,
    hashKey: compileHashKey(p.hash_key),
    connections: p.connections,
    connectTimeoutMs: parseDuration(p.connect_timeout),
    keepAliveTimeoutMs: parseDuration(p.keep_alive_timeout),
    targets,
    health: p.health ? compileHealth(name, p.health, problems) : null,
    passive: p.passive
      ? {
          failures: p.passive.failures,
          ejectionMs: parseDuration(p.passive.ejection),
          maxEjectionMs: Math.max(parseDuration(p.passive.max_ejection), parseDuration(p.passive.ejection)),
          maxEjectedPercent: p.passive.max_ejected,
        }
      : null,
    panicThreshold: p.panic_threshold,
  };
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
const ADMIN_PATHS = ['/pools', '/servers', '/stats', '/config', '/queue', '/dashboard'];

function checkMetrics(config: Config, problems: CompileProblem[]): void {
  const { path, port } = config.metrics;
  const base = `/${path.split('/')[1]}`;
  if (path === '/' || ADMIN_PATHS.includes(base))
    problems.push({
      path: ['metrics', 'path'],
      message: `"${path}" is an admin API path; use e.g. /metrics`,
    });
  if (port !== null && port !== 0) {
    if (port === config.listen.port)
      problems.push({ path: ['metrics', 'port'], message: `${port} is listen.port already` });
    else if (config.admin.enabled && port === config.admin.port)
      problems.push({ path: ['metrics', 'port'], message: `${port} is admin.port already` });
  }
}

/** The keys of a route that name its action; a route has exactly one. */
export const ACTION_KEYS = ['proxy', 'respond', 'multiplex', 'defer'] as const;

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
    return { kind: 'multiplex', options: compileMultiplexOptions(raw, prefix), key };
  } catch (err) {
    if (!(err instanceof MultiplexConfigError)) throw err;
    problems.push({ path: keyPath(base, prefix, err.path), message: err.problem });
    // Never served: with a problem, compile() returns no config.
    return { kind: 'respond', status: 500, body: Buffer.alloc(0), headers: {}, ready: false };
  }
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
    if (!Object.hasOwn(config.pools, r.proxy.pool)) {
      const known = Object.keys(config.pools);
      problems.push({
        path: ['routes', index, 'proxy', 'pool'],
        message: `unknown pool "${r.proxy.pool}"${known.length ? ` (pools: ${known.join(', ')})` : ' (no pools defined)'}`,
      });
    }
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
    if (!Object.hasOwn(config.pools, r.defer.pool)) {
      problems.push({
        path: ['routes', index, 'defer', 'pool'],
        message: `unknown pool "${r.defer.pool}" (pools: ${Object.keys(config.pools).join(', ') || 'none defined'})`,
      });
    }
    const path = ['routes', index, 'defer'];
    action = { kind: 'defer', spec: compileDefer(r.defer, path, problems) };
  } else {
    const s = r.respond ?? { status: 404, body: '', headers: {}, ready: false };
    action = { kind: 'respond', status: s.status, body: Buffer.from(s.body), headers: s.headers, ready: s.ready };
  }
  return {
    id: r.id ?? `route-${index}`,
    index,
    matches: compileMatch(r.match),
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
  if (config.metrics) checkMetrics(config, problems);
  if (config.queue) compileQueue(config.queue, problems);
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
  return problems.length > 0 ? { problems } : { compiled: { routes, pools }, problems };
}
