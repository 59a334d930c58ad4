/**
 * The `multiplex:` block of a route: its JSON schema (with defaults, for config/schema.ts),
 * its raw and compiled types, and `compileMultiplexOptions()`, which parses durations, sizes
 * and the allow list once at config time. The batch body validator lives in batch.ts and is
 * re-exported here.
 */
import { Ajv, type ErrorObject } from 'ajv';
import { AJV_CODE } from '../lib/ajv.ts';
import type { CompileProblem } from '../lib/problem.ts';
import { compileTls, type TlsSpec } from '../lib/tls.ts';
import { parseDuration, parseSize } from '../lib/units.ts';
import { type AllowList, compileAllowList } from './ssrf.ts';

export { parseBatch } from './batch.ts';

const DURATION = '^\\d+(\\.\\d+)?(ms|s|m|h)$';
const SIZE = '^\\d+\\s*(B|kB|KB|KiB|MB|MiB|GB|GiB)?$';

export const DURATION_HINT = 'must be a duration like "250ms", "10s", "1m" or integer milliseconds';
export const SIZE_HINT = 'must be a size like 1048576 (bytes), "512KiB" or "1MiB"';

export const SIZE_KEYS: ReadonlySet<string> = new Set([
  'max_item_bytes',
  'max_total_bytes',
  'max_body_bytes',
]);

const duration = (def: string, description: string) => ({
  description,
  anyOf: [
    { type: 'integer', minimum: 1 },
    { type: 'string', pattern: DURATION },
  ],
  default: def,
});

const size = (def: number, description: string) => ({
  description,
  anyOf: [
    { type: 'integer', minimum: 1 },
    { type: 'string', pattern: SIZE },
  ],
  default: def,
});

const count = (def: number, max: number, description: string) => ({
  description,
  type: 'integer',
  minimum: 1,
  maximum: max,
  default: def,
});

/** JSON schema (draft-07) of a route's `multiplex:` block. Durations: ms integer or "250ms"/"10s". */
export const multiplexSchema = Object.freeze({
  type: 'object',
  additionalProperties: false,
  properties: {
    format: {
      description:
        'Body and answer shape: "manifold" (this gateway\'s own) or "octoplex" (Octoplex\'s: ' +
        'tagged Success/Failure items, errors as {"error": text}, timeout_msec required, no ' +
        'Accept-Encoding added, so decompress is off).',
      type: 'string',
      enum: ['manifold', 'octoplex'],
      default: 'manifold',
    },
    max_requests: count(100, 10_000, 'Most requests in one batch; more is a 400. Bounds fan-out per call.'),
    max_timeout: duration(
      '10s',
      'Longest batch deadline a caller may ask for, and the deadline when it asks for none.',
    ),
    allow: {
      description:
        'Targets allowed: host names, "*.domain" (any name below domain), "*" (any name) and CIDRs or IPs. ' +
        'Absent: any public address. Loopback, private, link-local, multicast and other ' +
        'special-use addresses are refused unless inside a CIDR listed here. Risk: listing ' +
        'internal ranges lets batch callers reach internal services.',
      type: 'array',
      minItems: 1,
      items: { type: 'string', minLength: 1 },
    },
    max_item_bytes: size(
      1_048_576,
      'Largest decoded response body of one request; beyond it: BODY_TOO_LARGE.',
    ),
    max_total_bytes: size(8_388_608, 'Largest sum of decoded response bodies in one batch.'),
    max_concurrency: count(
      64,
      100_000,
      'Outbound requests in flight at once, over all batches of this route in this process; others wait.',
    ),
    max_connections_per_origin: count(
      16,
      10_000,
      'Connections kept to one target origin (scheme, resolved address and port); requests beyond wait for one. Spares targets from a batch-wide burst.',
    ),
    max_body_bytes: size(1_048_576, 'Largest batch request body accepted (413 beyond it).'),
    max_redirects: count(5, 20, 'Redirect hops followed when a batch or request sets follow_redirects.'),
    decompress: {
      description: 'Ask targets for gzip/br and decode the answer (when a request sets no Accept-Encoding).',
      type: 'boolean',
      default: true,
    },
    dns_max_ttl: duration('60s', 'Longest time a DNS answer is reused, whatever its TTL says.'),
    keep_alive_timeout: duration('4s', 'How long an idle connection to a target is kept for reuse.'),
    // Issue 14 item 4: the pool `tls` keys that fit a route reaching many targets.
    ca: {
      description:
        "PEM file of the CA certificate(s) that https targets' certificates must chain to (a private CA, without NODE_EXTRA_CA_CERTS); replaces the system's CAs for this route. Absent = the system's CAs.",
      type: 'string',
      minLength: 1,
    },
    cert: {
      description: 'PEM file of a client certificate (chain) offered to https targets that ask for one (mTLS); needs `key`.',
      type: 'string',
      minLength: 1,
    },
    key: { description: 'PEM file of the private key of `cert`.', type: 'string', minLength: 1 },
  },
} as const);

/** The raw block after schema defaults are applied. */
export type BatchFormatName = 'manifold' | 'octoplex';

export interface MultiplexConfig {
  format: BatchFormatName;
  max_requests: number;
  max_timeout: string | number;
  allow?: string[];
  max_item_bytes: string | number;
  max_total_bytes: string | number;
  max_concurrency: number;
  max_connections_per_origin: number;
  max_body_bytes: string | number;
  max_redirects: number;
  decompress: boolean;
  dns_max_ttl: string | number;
  keep_alive_timeout: string | number;
  ca?: string;
  cert?: string;
  key?: string;
}

/** Compiled, frozen options; what the handler and `parseBatch` read. */
export interface MultiplexOptions {
  readonly format: BatchFormatName;
  readonly maxRequests: number;
  readonly maxTimeoutMs: number;
  /** null: no allow list (any public address). */
  readonly allow: AllowList | null;
  readonly maxItemBytes: number;
  readonly maxTotalBytes: number;
  readonly maxConcurrency: number;
  readonly maxConnectionsPerOrigin: number;
  readonly maxBodyBytes: number;
  readonly maxRedirects: number;
  readonly decompress: boolean;
  readonly dnsMaxTtlMs: number;
  readonly keepAliveTimeoutMs: number;
  /** TLS to https targets (PEM texts read at config time); null = Node's defaults. */
  readonly tls: TlsSpec | null;
}

/** A multiplex route's action in the compiled config (config/compile.ts `RouteAction`). */
export interface MultiplexAction {
  readonly kind: 'multiplex';
  /** Compiled once at config time; the runtime builds the route's live handler from them (issue 5). */
  readonly options: MultiplexOptions;
  /** Equal keys mean equal options: a new snapshot then keeps the route's handler. */
  readonly key: string;
}

/**
 * A config error; `path` is the full key path, e.g. `routes[2].multiplex.allow[1]`, and
 * `problem` the message without it (what config/compile.ts reports next to the path).
 */
export class MultiplexConfigError extends Error {
  readonly path: string;
  readonly problem: string;
  override readonly name = 'MultiplexConfigError';

  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.path = path;
    this.problem = problem;
  }
}

let validate: ReturnType<Ajv['compile']> | undefined;

function schemaProblem(path: string, errors: ErrorObject[]): MultiplexConfigError {
  // An anyOf (duration or size) reports each branch first; its own error says more.
  const err = errors.find((e) => e.keyword === 'anyOf') ?? errors[0];
  const at = path + err.instancePath.replace(/\/(\d+)/g, '[$1]').replace(/\//g, '.');
  if (err.keyword === 'additionalProperties') {
    return new MultiplexConfigError(`${at}.${err.params.additionalProperty}`, 'unknown key');
  }
  if (err.keyword === 'anyOf') {
    return new MultiplexConfigError(at, SIZE_KEYS.has(err.instancePath.slice(1)) ? SIZE_HINT : DURATION_HINT);
  }
  return new MultiplexConfigError(at, err.message ?? 'invalid');
}

/**
 * Validates `raw` (defaults applied to a copy) and compiles it. Throws MultiplexConfigError
 * naming the key path (`path` is where the block sits in the config file).
 */
export function compileMultiplexOptions(raw: unknown, path = 'multiplex'): MultiplexOptions {
  validate ??= new Ajv({ useDefaults: true, allErrors: false, code: AJV_CODE }).compile(multiplexSchema);
  const cfg = structuredClone(raw ?? {});
  if (!validate(cfg)) throw schemaProblem(path, validate.errors!);
  const c = cfg as MultiplexConfig;

  // The schema has checked the shapes; the units come from lib/units.ts like every key's.
  const parsed = (parse: (v: string | number) => number, value: unknown) => {
    try {
      return parse(value as string | number);
    } catch {
      return Number.NaN;
    }
  };
  const ms = (key: keyof MultiplexConfig) => {
    const v = parsed(parseDuration, c[key]);
    if (!Number.isFinite(v) || v < 1) throw new MultiplexConfigError(`${path}.${key}`, 'not a duration');
    return v;
  };
  const bytes = (key: keyof MultiplexConfig) => {
    const v = parsed(parseSize, c[key]);
    if (!Number.isSafeInteger(v) || v < 1) throw new MultiplexConfigError(`${path}.${key}`, 'not a size');
    return v;
  };

  let allow: AllowList | null = null;
  if (c.allow) {
    const compiled = compileAllowList(c.allow);
    if ('reason' in compiled)
      throw new MultiplexConfigError(`${path}.allow[${compiled.index}]`, compiled.reason);
    allow = compiled;
  }

  let tls: TlsSpec | null = null;
  if (c.ca !== undefined || c.cert !== undefined || c.key !== undefined) {
    const problems: CompileProblem[] = [];
    tls = compileTls({ ca: c.ca, cert: c.cert, key: c.key, reject_unauthorized: true }, [], problems);
    if (problems.length > 0) throw new MultiplexConfigError(`${path}.${problems[0].path.join('.')}`, problems[0].message);
  }

  const maxItemBytes = bytes('max_item_bytes');
  const maxTotalBytes = bytes('max_total_bytes');
  if (maxTotalBytes < maxItemBytes) {
    throw new MultiplexConfigError(`${path}.max_total_bytes`, 'must not be smaller than max_item_bytes');
  }
  return Object.freeze({
    format: c.format,
    maxRequests: c.max_requests,
    maxTimeoutMs: ms('max_timeout'),
    allow,
    maxItemBytes,
    maxTotalBytes,
    maxConcurrency: c.max_concurrency,
    maxConnectionsPerOrigin: c.max_connections_per_origin,
    maxBodyBytes: bytes('max_body_bytes'),
    maxRedirects: c.max_redirects,
    // Octoplex sends no Accept-Encoding and hands back the bytes it got (issue 12).
    decompress: c.format === 'octoplex' ? false : c.decompress,
    dnsMaxTtlMs: ms('dns_max_ttl'),
    keepAliveTimeoutMs: ms('keep_alive_timeout'),
    tls,
  });
}
