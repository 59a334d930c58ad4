/**
 * The `tcp:` block of a `mode: tcp` listener (issue 17, item 2): its JSON schema (with
 * defaults, for config/schema.ts to place under `listeners[].tcp`), the validated shape
 * (`TcpConfig`), the compiled one (`TcpSpec`) and the compiler between them, which
 * config/compile.ts calls with the pool names it knows. Pure: no sockets, no timers.
 *
 * In YAML (see README "TCP mode"):
 *
 * ```yaml
 * listeners:
 *   - port: 8443
 *     mode: tcp
 *     tcp:
 *       window_bytes: 32KiB      # most bytes read to decide (default 32KiB)
 *       window_timeout: 3s       # longest wait for them (default 3s)
 *       idle_timeout: 5m         # no byte either way for this long closes (default 5m; 0 = never)
 *       connect_timeout: 5s      # per target connect (default 5s)
 *       proxy_protocol: v1       # v1 | v2; absent = none
 *       routes:
 *         - { id: web, sni: [www.example.com, "*.example.com"], pool: web }
 *         - { id: plain, host: [example.com], pool: plain }
 *       default_pool: fallback   # anything else (no SNI match, unknown bytes, nothing sent)
 * ```
 */
import { type CompileProblem, unknownPool } from '../lib/problem.ts';
import { type Duration, DURATION_PATTERN, parseDuration, parseSize, type Size, SIZE_PATTERN } from '../lib/units.ts';
import { NAME_PATTERN } from '../lib/names.ts';
import { hostMatcher } from '../routing/matcher.ts';

// ---- as validated ----

export interface TcpRouteConfig {
  id?: string;
  /** TLS server names: exact, `*.domain` (any name below it) or `*` (any TLS, SNI or not). */
  sni?: string[];
  /** HTTP/1.x Host names, same patterns; `*` also takes a request without Host. */
  host?: string[];
  pool: string;
}

export interface TcpConfig {
  window_bytes: Size;
  window_timeout: Duration;
  idle_timeout: Duration;
  connect_timeout: Duration;
  proxy_protocol?: 'v1' | 'v2';
  /** Default `refuse` (the schema fills it in). */
  connect?: 'refuse' | 'pipe';
  routes: TcpRouteConfig[];
  default_pool?: string;
}

// ---- compiled ----

export type NameTest = (name: string | null) => boolean;

export interface TcpRouteSpec {
  /** Used in logs and metrics: the configured `id`, else `tcp-route-N`. */
  id: string;
  /** Matches a TLS connection by its SNI (null: none sent); null = this route takes no TLS. */
  sni: NameTest | null;
  /** Matches an HTTP/1.x connection by its Host ('' when absent); null = this route takes no HTTP. */
  host: NameTest | null;
  pool: string;
}

export interface TcpSpec {
  windowBytes: number;
  windowTimeoutMs: number;
  /** 0 = never. */
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  proxyProtocol: 'v1' | 'v2' | null;
  /** An HTTP `CONNECT` request line: answered 405 and closed (`refuse`), or routed as any HTTP request (`pipe`). */
  connect: 'refuse' | 'pipe';
  routes: TcpRouteSpec[];
  /** Takes what no route does (unknown bytes, nothing sent); null = such connections are closed. */
  defaultPool: string | null;
}

/** The route id of the default pool, in logs and metrics. */
export const DEFAULT_ROUTE = 'default';

// ---- schema ----

/** A window larger than this would let each client hold that much memory before it is routed. */
export const MAX_WINDOW_BYTES = 1024 * 1024;

const duration = (description: string, dflt: string) => ({
  description,
  anyOf: [
    { type: 'string', pattern: DURATION_PATTERN },
    { type: 'integer', minimum: 0 },
  ],
  errorMessage: 'must be a duration such as 250ms, 5s or 2m',
  default: dflt,
});

const names = (description: string) => ({
  description,
  type: 'array',
  minItems: 1,
  items: { type: 'string', minLength: 1, maxLength: 255, pattern: '^(\\*|(\\*\\.)?[A-Za-z0-9_.-]+)$' },
});

/** JSON schema (draft-07) of a TCP listener's `tcp:` block. */
export const tcpSchema = Object.freeze({
  description: 'A `mode: tcp` listener: routes each connection by its first bytes, then pipes bytes both ways.',
  type: 'object',
  additionalProperties: false,
  properties: {
    window_bytes: {
      description:
        'Most bytes read from a new connection to decide its route (a TLS ClientHello, an HTTP/1.x request head). Held per connection until routed, so bounded (1MiB at most).',
      anyOf: [
        { type: 'string', pattern: SIZE_PATTERN },
        { type: 'integer', minimum: 1 },
      ],
      errorMessage: 'must be a size such as 64KiB or 10MB',
      default: '32KiB',
    },
    window_timeout: duration(
      'Longest wait for the bytes that decide. Then what has come decides: nothing (a protocol where the server speaks first) goes to `default_pool`.',
      '3s',
    ),
    idle_timeout: duration('A connection with no byte in either direction for this long is closed; 0 = never.', '5m'),
    connect_timeout: duration('Time allowed to connect to one target; a failure tries the next one.', '5s'),
    proxy_protocol: {
      description:
        'Sends a PROXY protocol header (HAProxy\'s, `v1` text or `v2` binary) to the target first, with the client\'s address. Only for targets that expect one: anything else sees garbage.',
      type: 'string',
      enum: ['v1', 'v2'],
    },
    connect: {
      description:
        'A connection that starts with an HTTP `CONNECT` request: `refuse` answers 405 `METHOD_NOT_ALLOWED` and closes (a tcp listener is no forward proxy); `pipe` routes it as any HTTP/1.x request, to a target that is a forward proxy itself.',
      type: 'string',
      enum: ['refuse', 'pipe'],
      default: 'refuse',
    },
    routes: {
      description: 'Tried in order; the first whose `sni` (TLS) or `host` (HTTP/1.x) names match takes the connection.',
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['pool'],
        anyOf: [{ required: ['sni'] }, { required: ['host'] }],
        errorMessage: 'needs `sni` (TLS names) or `host` (HTTP names), and a `pool`',
        properties: {
          id: { description: 'Route id in logs and metrics (default `tcp-route-N`).', type: 'string', pattern: NAME_PATTERN },
          sni: names('TLS server names (SNI), read from the ClientHello without terminating TLS: exact, `*.domain`, or `*` (any TLS connection).'),
          host: names('HTTP/1.x Host names: exact, `*.domain`, or `*` (any HTTP/1.x request).'),
          pool: { description: 'The pool whose targets take the connection.', type: 'string', minLength: 1 },
        },
      },
      default: [],
    },
    default_pool: {
      description:
        'Takes every connection no route takes (unknown bytes, no match, nothing sent before `window_timeout`). Absent: those are closed (TLS gets an `unrecognized_name` alert, HTTP a 404).',
      type: 'string',
      minLength: 1,
    },
  },
});

// ---- compiler ----

function nameTest(patterns: string[]): NameTest {
  if (patterns.includes('*')) return () => true;
  const test = hostMatcher(patterns.map((p) => (p.endsWith('.') ? p.slice(0, -1) : p)));
  return (name) => name !== null && name !== '' && test(name);
}

/**
 * Compiles a validated `tcp:` block found at key path `at` (e.g. `['listeners', 1, 'tcp']`);
 * pools are checked against `pools`, the names the config defines.
 */
export function compileTcp(
  c: TcpConfig,
  at: ReadonlyArray<string | number>,
  pools: ReadonlySet<string>,
  problems: CompileProblem[],
): TcpSpec {
  const ids = new Set<string>();
  const routes = c.routes.map((r, i): TcpRouteSpec => {
    const id = r.id ?? `tcp-route-${i}`;
    if (ids.has(id)) problems.push({ path: [...at, 'routes', i, 'id'], message: `duplicate route id "${id}"` });
    ids.add(id);
    if (!pools.has(r.pool)) problems.push({ path: [...at, 'routes', i, 'pool'], message: unknownPool(r.pool, pools) });
    return {
      id,
      sni: r.sni ? nameTest(r.sni) : null,
      host: r.host ? nameTest(r.host) : null,
      pool: r.pool,
    };
  });
  const defaultPool = c.default_pool ?? null;
  if (defaultPool !== null && !pools.has(defaultPool))
    problems.push({ path: [...at, 'default_pool'], message: unknownPool(defaultPool, pools) });
  const windowBytes = parseSize(c.window_bytes);
  if (windowBytes < 1 || windowBytes > MAX_WINDOW_BYTES)
    problems.push({ path: [...at, 'window_bytes'], message: `must be between 1B and ${MAX_WINDOW_BYTES / 1024}KiB` });
  const windowTimeoutMs = parseDuration(c.window_timeout);
  if (windowTimeoutMs <= 0) problems.push({ path: [...at, 'window_timeout'], message: 'must be more than 0' });
  const connectTimeoutMs = parseDuration(c.connect_timeout);
  if (connectTimeoutMs <= 0) problems.push({ path: [...at, 'connect_timeout'], message: 'must be more than 0' });
  if (routes.length === 0 && defaultPool === null)
    problems.push({ path: [...at, 'routes'], message: 'a TCP listener needs a route or a `default_pool`' });
  return {
    windowBytes,
    windowTimeoutMs,
    idleTimeoutMs: parseDuration(c.idle_timeout),
    connectTimeoutMs,
    proxyProtocol: c.proxy_protocol ?? null,
    connect: c.connect ?? 'refuse',
    routes,
    defaultPool,
  };
}

/** The route that takes a sniffed connection: the first match, else the default pool's, else null. */
export function pickRoute(
  spec: TcpSpec,
  sniffed: { kind: 'tls'; sni: string | null } | { kind: 'http'; host: string } | { kind: 'unknown' },
): { id: string; pool: string } | null {
  if (sniffed.kind !== 'unknown')
    for (const r of spec.routes) {
      if (sniffed.kind === 'tls' ? r.sni !== null && r.sni(sniffed.sni) : r.host !== null && r.host(sniffed.host))
        return r;
    }
  return spec.defaultPool === null ? null : { id: DEFAULT_ROUTE, pool: spec.defaultPool };
}
