/**
 * asyncproxy's configuration (issue 13 item 2): its `config.yaml` and its environment
 * variables, with its defaults and meanings (mrexox/asyncproxy `config/config.go`,
 * `config.yaml`, `internal/proxy/proxy.go`, `internal/worker/*.go`, `server/metrics.go`),
 * translated into one Manifold config: one catch-all `defer` route on PostgreSQL, its pool,
 * and the metrics port. The machinery is Manifold's own (DESIGN.md "compat mode").
 *
 * Found when `--config` (or MANIFOLD_CONFIG, or `./config.yaml` when neither is given) names a
 * file with asyncproxy's keys, or with `--asyncproxy` (then `./config.yaml` is optional, and
 * the environment alone is enough). Every key is overridable as asyncproxy's viper does it:
 * `proxy.remote_url` → `PROXY_REMOTE_URL`. `MANIFOLD_*` variables and flags then override the
 * translated config like any file's.
 *
 * Deliberate differences (README "Coming from asyncproxy"): a request that ran out of retries
 * is a dead letter, kept, not dropped; retries wait a backoff instead of coming back at once;
 * a failed direct delivery is queued rather than answered 400; the metrics' `path` label is
 * bounded.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { parseGoBool, parseGoDuration } from '../lib/go.ts';
import { configSchema } from '../config/schema.ts';
import { ConfigError, type ConfigProblem, type LoadedConfig, loadConfigText, type Override } from '../config/load.ts';

type Kind = 'bind' | 'int' | 'bool' | 'duration' | 'string';

/** Every key asyncproxy reads, with its kind and the default of its own `config.yaml`. */
export const ASYNCPROXY_KEYS = Object.freeze({
  'server.bind': { kind: 'bind', default: ':8080' },
  'server.response_status': { kind: 'int', default: 200 },
  'server.shutdown_timeout': { kind: 'duration', default: '30s' },
  'server.enqueue_enabled': { kind: 'bool', default: true },
  'server.enqueue_rate': { kind: 'int', default: 30 },
  'metrics.bind': { kind: 'bind', default: ':8081' },
  'metrics.path': { kind: 'string', default: '/metrics' },
  'proxy.remote_url': { kind: 'string', default: 'http://localhost:5000' },
  'proxy.request_timeout': { kind: 'duration', default: '120s' },
  'proxy.num_clients': { kind: 'int', default: 700 },
  'queue.workers': { kind: 'int', default: 120 },
  'queue.handle_per_second': { kind: 'int', default: 30 },
  'queue.max_retries': { kind: 'int', default: 1000 },
  'db.connection_string': {
    kind: 'string',
    default: 'host=localhost port=5432 user=postgres password=postgres dbname=asyncproxy sslmode=disable binary_parameters=yes',
  },
  'db.max_connections': { kind: 'int', default: 2 },
  'db.use_index': { kind: 'bool', default: true },
} as const satisfies Record<string, { kind: Kind; default: string | number | boolean }>);

export type AsyncproxyKey = keyof typeof ASYNCPROXY_KEYS;

/** The route id of the translated config (its jobs, logs and metrics carry it). */
export const ASYNCPROXY_ROUTE = 'asyncproxy';

/** `PROXY_REMOTE_URL` for `proxy.remote_url` (viper's `.` → `_` replacer, upper case). */
export const envName = (key: string): string => key.replace(/\./g, '_').toUpperCase();

/** The key's variable if set; empty counts as unset, as viper's AutomaticEnv has it. */
function envValue(env: NodeJS.ProcessEnv, key: string): string | undefined {
  const v = env[envName(key)];
  return v === '' ? undefined : v;
}

/** asyncproxy's sections; `server`, `proxy` and `db` never appear in a Manifold file. */
const SECTIONS = new Set(['server', 'metrics', 'proxy', 'queue', 'db']);
const MANIFOLD_KEYS = new Set(Object.keys((configSchema as { properties: object }).properties));
const OWN_QUEUE_KEYS = ['workers', 'handle_per_second', 'max_retries'];

/** Whether a parsed YAML document is an asyncproxy config (by its keys). */
export function isAsyncproxyConfig(raw: unknown): boolean {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return false;
  // A key only Manifold has makes it Manifold's (where `server` is an unknown key); other
  // sections (an older asyncproxy's `redis`) leave it asyncproxy's, to be refused by name.
  const keys = Object.keys(raw);
  if (keys.some((k) => !SECTIONS.has(k) && MANIFOLD_KEYS.has(k))) return false;
  const queue = (raw as Record<string, unknown>).queue;
  return (
    keys.some((k) => k === 'server' || k === 'proxy' || k === 'db') ||
    (queue !== null && typeof queue === 'object' && OWN_QUEUE_KEYS.some((k) => k in queue))
  );
}

/** Go's `time.ParseDuration` ("30s", "1m30s", "1.5h", "300ms", "0") in milliseconds; no sign. */
export function goDurationMs(text: string): number {
  const ns = /^[+-]/.test(text) ? null : parseGoDuration(text);
  if (ns === null) throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. 30s, 1m30s, 500ms)`);
  return Math.round(ns / 1e6);
}

/** Go's `net.Listen` address: `:8080` (every interface), `127.0.0.1:8080`, `[::1]:8080`. */
export function parseBind(text: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535) throw new Error(`not an address: ${JSON.stringify(text)} (use e.g. :8080 or 127.0.0.1:8080)`);
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  return { host: host === '' ? '0.0.0.0' : host, port: Number(m[2]) };
}

type Value = string | number | boolean | { host: string; port: number };

/** One value as asyncproxy reads it (viper + cast): YAML types or env strings. */
function convert(kind: Kind, value: unknown): Value {
  const text = typeof value === 'string' ? value.trim() : value;
  switch (kind) {
    case 'int':
      if (typeof text === 'number' && Number.isInteger(text)) return text;
      if (typeof text === 'string' && /^-?\d+$/.test(text)) return Number(text);
      throw new Error(`must be an integer, not ${JSON.stringify(value)}`);
    case 'bool': {
      const b = typeof text === 'boolean' ? text : parseGoBool(String(text));
      if (b !== null) return b;
      throw new Error(`must be true or false, not ${JSON.stringify(value)}`);
    }
    case 'duration':
      if (typeof text !== 'string') throw new Error(`must be a duration such as 30s, not ${JSON.stringify(value)}`);
      return goDurationMs(text);
    case 'bind':
      if (typeof text === 'number') return parseBind(`:${text}`);
      if (typeof text !== 'string') throw new Error(`must be an address such as :8080`);
      return parseBind(text);
    case 'string':
      if (typeof text !== 'string' && typeof text !== 'number') throw new Error('must be a string');
      return String(text);
  }
}

/** Reads the file (if any) and the environment into asyncproxy's settings; throws ConfigError. */
export function readAsyncproxy(
  text: string | null,
  file: string,
  env: NodeJS.ProcessEnv,
): Record<AsyncproxyKey, Value> {
  const problems: ConfigProblem[] = [];
  let raw: Record<string, unknown> = {};
  if (text !== null) {
    const doc = parseDocument(text, { uniqueKeys: true });
    if (doc.errors.length > 0)
      throw new ConfigError([{ source: file, path: '', message: `YAML: ${doc.errors[0].message.split('\n')[0]}` }]);
    raw = (doc.toJS() as Record<string, unknown> | null) ?? {};
    for (const [section, body] of Object.entries(raw)) {
      if (!SECTIONS.has(section)) {
        problems.push({ source: file, path: section, message: 'unknown key (not an asyncproxy setting)' });
        continue;
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        problems.push({ source: file, path: section, message: 'must be a mapping of keys' });
        continue;
      }
      for (const key of Object.keys(body))
        if (!(`${section}.${key}` in ASYNCPROXY_KEYS))
          problems.push({ source: file, path: `${section}.${key}`, message: 'unknown key (not an asyncproxy setting)' });
    }
  }
  const out = {} as Record<AsyncproxyKey, Value>;
  for (const [key, def] of Object.entries(ASYNCPROXY_KEYS) as Array<[AsyncproxyKey, (typeof ASYNCPROXY_KEYS)[AsyncproxyKey]]>) {
    const [section, name] = key.split('.');
    const fromEnv = envValue(env, key);
    const fromFile = (raw[section] as Record<string, unknown> | undefined)?.[name];
    const [value, source] =
      fromEnv !== undefined ? [fromEnv, `env ${envName(key)}`] : fromFile !== undefined ? [fromFile, file] : [def.default, 'asyncproxy default'];
    try {
      out[key] = convert(def.kind, value);
    } catch (err) {
      problems.push({ source, path: key, message: (err as Error).message });
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

/** asyncproxy's settings → a Manifold config (plain data; validated by the schema after). */
export function translate(s: Record<AsyncproxyKey, Value>, sourceOf: (key: AsyncproxyKey) => string): object {
  const problems: ConfigProblem[] = [];
  const check = (key: AsyncproxyKey, ok: boolean, message: string) => {
    if (!ok) problems.push({ source: sourceOf(key), path: key, message });
  };
  const int = (key: AsyncproxyKey) => s[key] as number;
  const ms = (key: AsyncproxyKey) => s[key] as number;
  let remote = '';
  try {
    const u = new URL(s['proxy.remote_url'] as string);
    check('proxy.remote_url', u.protocol === 'http:' || u.protocol === 'https:', 'must start with http:// or https://');
    // asyncproxy sends to the remote's scheme and host with the request's own path and query.
    remote = `${u.protocol}//${u.host}`;
  } catch {
    check('proxy.remote_url', false, 'must be an http(s) URL');
  }
  const status = int('server.response_status');
  check('server.response_status', status >= 200 && status <= 599, 'must be a status from 200 to 599');
  check('server.enqueue_rate', int('server.enqueue_rate') >= 0, 'must be 0 (always queue) or more');
  check('queue.handle_per_second', int('queue.handle_per_second') >= 1, 'must be at least 1');
  check('queue.workers', int('queue.workers') >= 1 && int('queue.workers') <= 10000, 'must be from 1 to 10000');
  check('proxy.num_clients', int('proxy.num_clients') >= 1 && int('proxy.num_clients') <= 100000, 'must be from 1 to 100000');
  check('queue.max_retries', int('queue.max_retries') >= 0 && int('queue.max_retries') < 100000, 'must be from 0 to 99999');
  check('db.max_connections', int('db.max_connections') >= 1 && int('db.max_connections') <= 1000, 'must be from 1 to 1000');
  check('metrics.path', /^\/[A-Za-z0-9._~/-]*$/.test(s['metrics.path'] as string), 'must be a path such as /metrics');
  if (problems.length > 0) throw new ConfigError(problems);

  const timeoutMs = ms('proxy.request_timeout');
  const rate = int('server.enqueue_rate');
  const listen = s['server.bind'] as { host: string; port: number };
  const metrics = s['metrics.bind'] as { host: string; port: number };
  return {
    listen,
    // asyncproxy is one process; MANIFOLD_WORKERS=auto spreads the accepts over the cores.
    workers: 0,
    admin: { enabled: false },
    shutdown: { grace: `${ms('server.shutdown_timeout')}ms` },
    metrics: { enabled: true, host: metrics.host, port: metrics.port, path: s['metrics.path'], asyncproxy: true },
    pools: { remote: { targets: [remote], connections: int('proxy.num_clients') } },
    // db.use_index has no counterpart: Manifold's claims always go through their own index.
    queue: { driver: 'postgres', url: s['db.connection_string'], pool_size: int('db.max_connections') },
    routes: [
      {
        id: ASYNCPROXY_ROUTE,
        match: {},
        // Each delivery (direct or from the queue) is bounded by request_timeout (0 = none).
        timeout: `${timeoutMs}ms`,
        ...(timeoutMs > 0 ? { headers_timeout: `${timeoutMs}ms`, idle_timeout: `${timeoutMs}ms` } : {}),
        defer: {
          pool: 'remote',
          host: 'target',
          status,
          body: 'empty',
          // A queued request is tried once, then retried max_retries times; then a dead letter.
          max_attempts: int('queue.max_retries') + 1,
          rate: `${int('queue.handle_per_second')}/s`,
          concurrency: int('queue.workers'),
          success: ['2xx'],
          // asyncproxy re-queues at once; a short backoff spares a remote that is down.
          backoff: { base: '100ms', max: '1m', jitter: 'full' },
          // asyncproxy reads bodies whole without a bound; this one is generous but finite.
          max_body_bytes: '10MiB',
          ...(s['server.enqueue_enabled'] === false
            ? { overflow: { rate: 'unlimited' } }
            : rate > 0
              ? { overflow: { rate: `${rate}/s`, burst: rate } }
              : {}),
        },
      },
    ],
  };
}

export interface AsyncproxyLoad {
  /** `--asyncproxy`: asyncproxy mode even without a file. */
  forced: boolean;
  /** `--config` or MANIFOLD_CONFIG; undefined = `./config.yaml` if it is asyncproxy's. */
  file: string | undefined;
  overrides: Override[];
  env?: NodeJS.ProcessEnv;
}

/** The file's text if it is an asyncproxy config (or asyncproxy mode is forced); else null. */
function asyncproxyText(file: string, forced: boolean): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (forced) throw new ConfigError([{ source: file, path: '', message: `cannot read: ${(err as Error).message}` }]);
    return null;
  }
  let raw: unknown;
  try {
    raw = parseDocument(text).toJS();
  } catch {
    return forced ? text : null;
  }
  if (forced || isAsyncproxyConfig(raw)) return text;
  return null;
}

/**
 * The asyncproxy translation when this start is asyncproxy's (see the header), else null:
 * the caller loads the file as Manifold's.
 */
export function loadAsyncproxy(options: AsyncproxyLoad): LoadedConfig | null {
  const env = options.env ?? process.env;
  const explicit = options.file !== undefined;
  const file = options.file ?? 'config.yaml';
  if (!explicit && !options.forced && !existsSync(file)) return null;
  const text = explicit || existsSync(file) ? asyncproxyText(file, options.forced) : null;
  if (text === null && !options.forced) return null;
  const settings = readAsyncproxy(text, file, env);
  const sourceOf = (key: AsyncproxyKey) =>
    envValue(env, key) !== undefined ? `env ${envName(key)}` : text !== null ? file : 'asyncproxy default';
  const config = translate(settings, sourceOf);
  const source = text === null ? 'asyncproxy (environment)' : `${file} (asyncproxy)`;
  return loadConfigText(JSON.stringify(config), source, { env, overrides: options.overrides });
}

interface MetricJson {
  name: string;
  values: ReadonlyArray<{ labels: Partial<Record<string, string | number>>; value: number; metricName?: string }>;
}

/** One exposition line; label values escaped as the text format wants. */
function line(name: string, labels: Partial<Record<string, string | number>>, value: number): string {
  const l = Object.entries(labels)
    .map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');
  return `${name}${l ? `{${l}}` : ''} ${value}`;
}

/** A Manifold histogram by `route` under asyncproxy's name, `route` becoming `path` (plus `extra`). */
function histogramAs(m: MetricJson | undefined, name: string, help: string, extra: Record<string, string>): string[] {
  const out = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
  for (const v of m?.values ?? []) {
    const suffix = (v.metricName ?? '').slice(m!.name.length);
    const { route, ...rest } = v.labels;
    out.push(line(`${name}${suffix}`, { path: route, ...extra, ...rest }, v.value));
  }
  return out;
}

/**
 * asyncproxy's metric names (`server/metrics.go`, `internal/proxy/proxy.go`), computed at
 * scrape time from Manifold's own series so the request path pays nothing twice. Their `path`
 * label is the route id, not the raw request path asyncproxy used (one series per distinct
 * URL, query included, grows without bound: STYLE.md §10); `status` of the delivery histogram
 * is `_all`, and it times deliveries from the queue only (a direct one is part of the
 * downstream request's time). Buckets are Manifold's.
 */
export function asyncproxyMetrics(snapshot: readonly MetricJson[]): string {
  const by = new Map(snapshot.map((m) => [m.name, m]));
  const requests = new Map<string, number>();
  for (const v of by.get('manifold_downstream_requests_total')?.values ?? []) {
    const route = String(v.labels.route);
    requests.set(route, (requests.get(route) ?? 0) + v.value);
  }
  let waiting = 0;
  for (const v of by.get('manifold_queue_jobs')?.values ?? [])
    if (v.labels.state === 'pending' || v.labels.state === 'inflight') waiting += v.value;
  return [
    '# HELP http_requests_total Number of requests.',
    '# TYPE http_requests_total counter',
    ...[...requests].map(([path, n]) => line('http_requests_total', { path }, n)),
    ...histogramAs(by.get('manifold_downstream_request_duration_seconds'), 'http_response_time_seconds', 'Response time.', {}),
    ...histogramAs(by.get('manifold_delivery_duration_seconds'), 'http_proxy_response_time_seconds', 'Proxy request response time.', {
      status: '_all',
    }),
    '# HELP queue_total_size Number of all requests in the queue.',
    '# TYPE queue_total_size gauge',
    line('queue_total_size', {}, waiting),
    '',
  ].join('\n');
}
