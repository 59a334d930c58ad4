/**
 * A pool's settings (the `pools` block): the shape the config schema validates (`…Config`),
 * the compiled form the upstream objects are built from (`…Spec`), and the compiler between
 * them, called by config/compile.ts (issue 11 item 3: config/ imports the feature's types,
 * never the reverse). Pure: no sockets, no timers.
 */
import type { CompileProblem } from '../lib/problem.ts';
import { compileTls, type TlsConfig, type TlsSpec } from '../lib/tls.ts';
import { statusRanges } from '../lib/statuses.ts';
import { type Duration, parseDuration } from '../lib/units.ts';
import { compileLocalAddresses } from './local-addresses.ts';
import type { SelectorName } from './selectors/index.ts';

// ---- as validated (config/schema.ts `poolSchema`, defaults applied) ----

export interface TargetConfig {
  url: string;
  weight?: number;
  id?: string;
  drain?: boolean;
}

export interface HealthConfig {
  type: 'http' | 'tcp';
  path: string;
  method: string;
  interval: Duration;
  timeout: Duration;
  expect: Array<number | string>;
  fall: number;
  rise: number;
}

export interface PassiveConfig {
  failures: number;
  ejection: Duration;
  max_ejection: Duration;
  max_ejected: number;
}

export interface PoolConfig {
  targets: Array<string | TargetConfig>;
  selector: SelectorName;
  hash_key: string;
  health?: HealthConfig;
  passive?: PassiveConfig;
  allow_special_targets: Array<'loopback' | 'private' | 'link-local' | 'metadata' | 'unspecified' | 'multicast' | 'broadcast' | 'reserved'>;
  panic_threshold: number;
  connections: number;
  connect_timeout: Duration;
  keep_alive_timeout: Duration;
  /** Issue 14 item 4: TLS to https targets (PEM file paths). */
  tls?: TlsConfig;
  http2: boolean;
  /** Issue 17 item 3: source addresses of new connections (IPs or `A-B` ranges). */
  local_addresses?: string | string[];
  /** Issue 11 item 2: longest reuse of a DNS answer for targets named by host name; 0 = off. */
  dns_max_ttl: Duration;
}

// ---- compiled ----

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
  /** `tcp`: a connect only (issue 17: pools that TCP listeners use); `http`: a request. */
  type: 'http' | 'tcp';
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
  selector: SelectorName;
  hashKey: HashKey;
  connections: number;
  connectTimeoutMs: number;
  keepAliveTimeoutMs: number;
  targets: TargetSpec[];
  health: HealthSpec | null;
  passive: PassiveSpec | null;
  /** Percent; below it the pool uses every target (panic). */
  panicThreshold: number;
  /** TLS to https targets (PEM texts read at config time); null = Node's defaults. */
  tls: TlsSpec | null;
  /** Offer HTTP/2 (ALPN) to https targets. */
  http2: boolean;
  /** Source addresses of new connections, round robin; [] = the kernel's choice. */
  localAddresses: string[];
  /** Longest reuse of a DNS answer for targets named by host name; 0 = no cache. */
  dnsMaxTtlMs: number;
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

/** A check interval shorter than this would keep a CPU busy; tests use 50-100 ms. */
const MIN_HEALTH_INTERVAL_MS = 10;

function compileHealth(name: string, h: HealthConfig, problems: CompileProblem[]): HealthSpec {
  const expectProblems: CompileProblem[] = [];
  const spec: HealthSpec = {
    type: h.type,
    path: h.path,
    method: h.method,
    intervalMs: parseDuration(h.interval),
    timeoutMs: parseDuration(h.timeout),
    expect: statusRanges(h.expect, 'exact', (i, message) =>
      expectProblems.push({ path: ['pools', name, 'health', 'expect', i], message }),
    ),
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
  problems.push(...expectProblems);
  return spec;
}

export function compilePool(name: string, p: PoolConfig, problems: CompileProblem[]): PoolSpec {
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
    tls: p.tls ? compileTls(p.tls, ['pools', name, 'tls'], problems) : null,
    http2: p.http2 === true,
    localAddresses: compileLocalAddresses(p.local_addresses, ['pools', name, 'local_addresses'], problems),
    dnsMaxTtlMs: parseDuration(p.dns_max_ttl),
  };
}
