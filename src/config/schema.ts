/**
 * The shape of Manifold's configuration: one JSON schema with defaults and a `description`
 * for every key (the README's configuration reference is checked against these), plus the
 * TypeScript types of the validated result. Cross-references (a route naming a pool) are
 * checked in compile.ts; everything about a single value's shape is checked here.
 */
import {
  DURATION_HINT,
  type MultiplexConfig,
  multiplexSchema,
  SIZE_HINT,
  SIZE_KEYS,
} from '../multiplex/schema.ts';
import type { LogLevel } from '../observability/logger.ts';
import type { TracingConfig } from '../observability/trace.ts';
import { type Duration, DURATION_PATTERN, type Size, SIZE_PATTERN } from '../lib/units.ts';
import type { DeferConfig, QueueConfig } from '../defer/spec.ts';
import type { ConnectConfig } from '../tunnel/spec.ts';
import type { MatchConfig } from '../routing/matcher.ts';
import type { StrategyConfig } from '../strategy/spec.ts';
import type { PoolConfig } from '../upstream/spec.ts';
import { NAME_PATTERN } from '../lib/names.ts';
import { type TcpConfig, tcpSchema } from '../tcp/spec.ts';

type Schema = Record<string, unknown>;

const duration = (description: string, dflt?: string): Schema => ({
  description,
  anyOf: [
    { type: 'string', pattern: DURATION_PATTERN },
    { type: 'integer', minimum: 0 },
  ],
  errorMessage: 'must be a duration such as 250ms, 5s or 2m',
  ...(dflt === undefined ? {} : { default: dflt }),
});

const size = (description: string, dflt?: string | null): Schema => ({
  description,
  anyOf: [
    { type: 'string', pattern: SIZE_PATTERN },
    { type: 'integer', minimum: 0 },
    ...(dflt === null ? [{ type: 'null' }] : []),
  ],
  errorMessage: 'must be a size such as 64KiB or 10MB',
  ...(dflt === undefined ? {} : { default: dflt }),
});

const object = (description: string, properties: Record<string, Schema>, extra: Schema = {}): Schema => ({
  description,
  type: 'object',
  additionalProperties: false,
  properties,
  default: {},
  ...extra,
});

/** A list of statuses: codes (`204`), ranges (`200-399`) or classes (`2xx`); default `[2xx]`. */
const statusList = (description: string, exampleRange: string): Schema => ({
  description,
  type: 'array',
  minItems: 1,
  items: {
    anyOf: [
      { type: 'integer', minimum: 100, maximum: 599 },
      { type: 'string', pattern: '^([1-5]xx|[1-5][0-9][0-9]-[1-5][0-9][0-9])$' },
    ],
    errorMessage: `must be a status (204), a range (${exampleRange}) or a class (2xx)`,
  },
  default: ['2xx'],
});

const HTTP_METHOD = '^[A-Z][A-Z0-9_-]*$';

const targetSchema: Schema = {
  description: 'A target: its origin URL with an optional path prefix, or an object with url and weight.',
  anyOf: [
    { type: 'string', format: 'target-url' },
    {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', format: 'target-url', description: 'Origin URL of the target.' },
        weight: { type: 'integer', minimum: 1, maximum: 10000, description: 'Relative weight (default 1).' },
        id: { type: 'string', pattern: '^[A-Za-z0-9._:-]+$', maxLength: 256, description: 'Stable id (default: host:port).' },
        drain: {
          type: 'boolean',
          description:
            'Drained by an operator: no new attempts or deliveries (in-flight ones finish), health checks go on (default false).',
        },
      },
    },
  ],
  errorMessage: 'must be an http(s) URL or {url, weight, id, drain}',
};

/** Issue 3: active checks, run once per target by the primary. Absent = no checks (always up). */
const healthSchema: Schema = {
  description:
    'Active health checks, run once per target by the primary (not once per worker). Absent = none: every target counts as up.',
  type: 'object',
  additionalProperties: false,
  properties: {
    type: {
      description:
        '`http`: a request, passing by its status (`path`, `method`, `expect`); `tcp`: a connect only, passing when the target accepts it — for pools that TCP listeners use (TLS passed through, SSH, databases), which an HTTP request would mark down.',
      type: 'string',
      enum: ['http', 'tcp'],
      default: 'http',
    },
    path: {
      description: 'Path requested on the target origin (the target URL prefix is not added).',
      type: 'string',
      pattern: '^/',
      default: '/',
    },
    method: {
      description: 'Method of the check.',
      type: 'string',
      pattern: '^[A-Z][A-Z0-9_-]*$',
      default: 'GET',
    },
    interval: duration('Time between the end of one check of a target and the start of the next.', '30s'),
    timeout: duration('Time a check may take, body included; longer counts as failed.', '2s'),
    expect: statusList(
      'Statuses that pass: codes (`204`), ranges (`200-399`) or classes (`2xx`). Every code is exact: `200` is 200 only (unlike `terminal`).',
      '200-399',
    ),
    fall: {
      description: 'Consecutive failed checks that mark a target down.',
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: 3,
    },
    rise: {
      description: 'Consecutive passed checks that mark a down target up again.',
      type: 'integer',
      minimum: 1,
      maximum: 1000,
      default: 2,
    },
  },
};

/** Issue 3: outlier ejection from real traffic, decided in each worker. Absent = off. */
const passiveSchema: Schema = {
  description:
    'Passive health (outlier ejection) from real traffic, decided by each worker for itself. Absent = off.',
  type: 'object',
  additionalProperties: false,
  properties: {
    failures: {
      description:
        'Consecutive failed attempts (connect errors, timeouts, invalid answers, 5xx) that eject a target.',
      type: 'integer',
      minimum: 1,
      maximum: 10000,
      default: 5,
    },
    ejection: duration('How long the first ejection lasts; each repeat doubles it.', '30s'),
    max_ejection: duration(
      'Longest ejection; a target that stays in this long is forgiven its earlier ejections.',
      '5m',
    ),
    max_ejected: {
      description: 'Percent of the pool that may be ejected at once (one target always may).',
      type: 'integer',
      minimum: 0,
      maximum: 100,
      default: 50,
    },
  },
};

export const poolSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['targets'],
  properties: {
    targets: {
      description: 'The targets of the pool.',
      type: 'array',
      items: targetSchema,
    },
    selector: {
      description:
        'How an attempt picks a target: `round-robin`, `weighted` (smooth weighted round-robin by target `weight`), `least-inflight` (the less busy of two random targets), `random`, or `hash` (rendezvous hashing on `hash_key`).',
      type: 'string',
      enum: ['round-robin', 'weighted', 'least-inflight', 'random', 'hash'],
      default: 'round-robin',
    },
    hash_key: {
      description:
        'What the `hash` selector hashes: `client_ip`, `header:NAME` or `cookie:NAME`. A request without it goes to a random target.',
      type: 'string',
      pattern: "^(client_ip|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+|cookie:[^\\s;=,]+)$",
      default: 'client_ip',
      errorMessage: 'must be client_ip, header:NAME or cookie:NAME',
    },
    health: healthSchema,
    passive: passiveSchema,
    allow_special_targets: {
      description:
        'Special-use address classes a target added through the admin API may have (its IP, or every address its name resolves to when it is added): `loopback`, `private`, `link-local`, `metadata` (cloud metadata services such as 169.254.169.254 and fd00:ec2::254), `unspecified`, `multicast`, `broadcast`, `reserved`. Anything else special is refused (400). Targets in the config file are not checked.',
      type: 'array',
      items: {
        type: 'string',
        enum: ['loopback', 'private', 'link-local', 'metadata', 'unspecified', 'multicast', 'broadcast', 'reserved'],
      },
      uniqueItems: true,
      default: ['loopback', 'private'],
    },
    panic_threshold: {
      description:
        "When fewer than this percent of the targets are usable (up and not ejected), every target is used: trying a maybe-dead target beats a 503 for every request (Envoy's panic threshold). 0 = never.",
      type: 'integer',
      minimum: 0,
      maximum: 100,
      default: 50,
    },
    connections: {
      description: 'Most connections kept open to each target (undici Pool `connections`).',
      type: 'integer',
      minimum: 1,
      maximum: 100000,
      default: 128,
    },
    connect_timeout: duration('Time allowed to open a connection to a target.', '5s'),
    keep_alive_timeout: duration('How long an idle connection to a target is kept.', '30s'),
    // Issue 14 item 4: TLS and HTTP/2 to targets.
    tls: {
      description:
        'TLS to the https targets of the pool (and their health checks). PEM files are read when the config is loaded or reloaded; a missing or unreadable file is a config error.',
      type: 'object',
      additionalProperties: false,
      properties: {
        ca: {
          type: 'string',
          minLength: 1,
          description:
            "PEM file of the CA certificate(s) that sign the targets' certificates: a private CA, without NODE_EXTRA_CA_CERTS. Replaces the system's CAs for this pool. Absent = the system's CAs.",
        },
        cert: {
          type: 'string',
          minLength: 1,
          description: 'PEM file of the client certificate (chain) sent to targets that ask for one (mTLS); needs `key`.',
        },
        key: { type: 'string', minLength: 1, description: 'PEM file of the private key of `cert`.' },
        servername: {
          type: 'string',
          minLength: 1,
          maxLength: 253,
          description:
            "SNI name sent and the name the target's certificate must carry. Absent = the target URL's host (an IP literal: no SNI, the certificate must carry the IP).",
        },
        reject_unauthorized: {
          type: 'boolean',
          default: true,
          description:
            'false: accept any certificate, unverified (logged as a warning at start). Risk: anyone on the path can read and change the traffic; prefer `ca`.',
        },
      },
    },
    http2: {
      type: 'boolean',
      default: false,
      description:
        'HTTP/2 to targets: offered first by ALPN to https targets (undici `allowH2`), spoken with prior knowledge (h2c, undici `useH2c`) to http:// targets, which must then speak it. One multiplexed connection per target instead of many. false = HTTP/1.1 only.',
    },
    // Issue 11 item 2: undici's dns interceptor for targets named by host name.
    dns_max_ttl: duration(
      "Targets named by host name: how long a DNS answer is reused at most, whatever its TTL says (answers from /etc/hosts or getaddrinfo, which have none, are kept 5s); new connections are spread over the addresses. IPv4 addresses are used when the name has any. 0 = no cache: every new connection resolves through the system's resolver. IP-literal targets are not resolved.",
      '30s',
    ),
    // Issue 17 item 3: Layer7Router's -client_start_ip/-client_end_ip.
    local_addresses: {
      description:
        'Source addresses of new connections to the targets, used round robin (past the ~28K ports one address gives per target): an IP, an IPv4 range `127.0.0.2-127.0.0.9`, or a list of them. Each must be an address of this host. Absent = the kernel chooses.',
      anyOf: [
        { type: 'string', minLength: 1 },
        { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
      ],
      errorMessage: 'must be an IP, a range "A-B", or a list of them',
    },
  },
};

const matchSchema = object(
  'What a request must look like for this route to take it. Every given field must match.',
  {
    host: {
      description: 'Host name(s): exact (`api.example.com`) or suffix (`*.example.com`); port ignored.',
      anyOf: [
        { type: 'string', minLength: 1 },
        { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1 },
      ],
      errorMessage: 'must be a host name or a list of them',
    },
    path: {
      description: 'Path: exact (`/health`), prefix (`/v1/*`) or with `:param` segments (`/users/:id`).',
      type: 'string',
      pattern: '^/',
      errorMessage: 'must start with /',
    },
    methods: {
      description: 'HTTP methods (upper case).',
      type: 'array',
      items: { type: 'string', pattern: HTTP_METHOD },
      minItems: 1,
    },
    listener: {
      description:
        'Listener name(s) the request must have come in on (issue 14): `listeners[].name`, or `default` for the `listen` shorthand.',
      anyOf: [
        { type: 'string', pattern: NAME_PATTERN },
        { type: 'array', items: { type: 'string', pattern: NAME_PATTERN }, minItems: 1 },
      ],
      errorMessage: 'must be a listener name or a list of them',
    },
    headers: {
      description: 'Header values that must be present: name → value, list of values, or `*` for any value.',
      type: 'object',
      additionalProperties: {
        anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, minItems: 1 }],
      },
    },
  },
);

const proxySchema: Schema = {
  description: 'Forward the request to a pool.',
  type: 'object',
  additionalProperties: false,
  required: ['pool'],
  properties: {
    pool: { type: 'string', description: 'Name of the pool to send to.' },
    host: {
      description:
        '`preserve` keeps the downstream Host; `target` uses the target URL host; anything else is sent as is.',
      type: 'string',
      minLength: 1,
      default: 'preserve',
    },
    strip_prefix: {
      description: 'A path prefix removed before the target path prefix is joined (e.g. `/v1`).',
      type: 'string',
      pattern: '^/',
    },
    // Issue 4: strategies over several targets (src/strategy/).
    strategy: {
      description:
        'How the route spends attempts. `single`: one attempt; only a connect failure (nothing was sent) is tried again on another target. `failover`: targets one after another, the next only after the previous answered with a status not in `terminal` or failed; never two in flight (for per-call-paid APIs). `fanout`: `width` targets at once, the first accepted answer is streamed, the others aborted; costs `width`× upstream load. `hedge`: one attempt, another to a different target when none is accepted `hedge_after` later, within `hedge_budget`.',
      type: 'string',
      enum: ['single', 'failover', 'fanout', 'hedge'],
      default: 'single',
    },
    max_attempts: {
      description:
        'Most attempts for one request (failover, hedge, and connect retries of single); each target is tried at most once, so the pool size also bounds it. Every attempt fits inside the route `timeout`.',
      type: 'integer',
      minimum: 1,
      maximum: 10,
      default: 3,
    },
    order: {
      description:
        "Which target goes first: `listed` (the pool's targets in config order, primary first) or `selector` (the pool's selector, which spreads first attempts). Default: `listed` for failover, `selector` otherwise.",
      type: 'string',
      enum: ['listed', 'selector'],
    },
    width: {
      description: 'Fanout only: targets sent to at once (default: every target of the pool, at most 32).',
      type: 'integer',
      minimum: 1,
      maximum: 32,
    },
    hedge_after: {
      description:
        "Hedge only: when the next attempt is sent if none was accepted yet: a duration (`50ms`) or a percentile of the route's recent attempt latency (`p95`, per worker, over the last 512 attempts). A percentile hedges nothing until 20 attempts have been seen.",
      anyOf: [
        { type: 'string', pattern: DURATION_PATTERN },
        { type: 'integer', minimum: 0 },
        { type: 'string', pattern: '^p\\d{1,2}(\\.\\d+)?$' },
      ],
      errorMessage: 'must be a duration such as 50ms or a percentile such as p95',
      default: 'p95',
    },
    hedge_budget: {
      description:
        'Hedge only: hedges allowed per request over `hedge_budget_window` (0.1 = at most 10% extra attempts, plus one per window). Keeps a slow target from doubling the load; 0 = no hedges.',
      type: 'number',
      minimum: 0,
      maximum: 1,
      default: 0.1,
    },
    hedge_budget_window: duration('Hedge only: the sliding window `hedge_budget` is counted over.', '10s'),
    terminal: {
      description:
        'Statuses accepted as the answer; any other (and connect errors, per-try timeouts) means "try another target" while the strategy may, else it is relayed. A multiple of 100 is its class (`400` = 400-499), other codes are exact (`429`), `500-503` is a range, `4xx` a class. Default: every status below 500.',
      type: 'array',
      items: {
        anyOf: [
          { type: 'integer', minimum: 100, maximum: 599 },
          { type: 'string', pattern: '^([1-5][0-9][0-9](-[1-5][0-9][0-9])?|[1-5]xx)$' },
        ],
        errorMessage: 'must be a status (429), a class (400 or 4xx) or a range (500-503)',
      },
      default: [100, 200, 300, 400],
    },
    max_replay_bytes: size(
      'Largest request body buffered so that it can be sent again (failover, fanout, hedge). A larger body, or a chunked one that grows past it, streams to one target with a single attempt.',
      '1MiB',
    ),
    retry_non_idempotent: {
      description:
        'Also retry and hedge POST, PATCH and other non-idempotent requests after the target saw them (risk: the target may act twice). Without it they are retried only after connect failures. Fanout always sends to several targets: choosing it is the consent.',
      type: 'boolean',
      default: false,
    },
    target_header: {
      description: 'Add `x-manifold-target: <target id>` to the response, naming the target that served it.',
      type: 'boolean',
      default: true,
    },
    // Issue 13: balancing-reverse-proxy answers a bare 500 when no endpoint gave a usable answer.
    exhausted: {
      description:
        'The answer when no attempt was accepted (every answer outside `terminal`, or none): this status and body instead of relaying the last answer or a 502/504 JSON error. Absent = relay / JSON error (what the last target said is usually worth more). Quick mode sets `{status: 500, body: ""}`, as balancing-reverse-proxy answers.',
      type: 'object',
      additionalProperties: false,
      properties: {
        status: { type: 'integer', minimum: 200, maximum: 599, default: 500, description: 'Status of that answer.' },
        body: { type: 'string', default: '', description: 'Its body (sent as `text/plain` when not empty).' },
      },
    },
  },
};

const respondSchema: Schema = {
  description: 'Answer directly, without a target (health checks, maintenance pages).',
  type: 'object',
  additionalProperties: false,
  properties: {
    status: { type: 'integer', minimum: 200, maximum: 599, default: 200, description: 'Status code.' },
    body: { type: 'string', default: '', description: 'Response body.' },
    headers: {
      type: 'object',
      additionalProperties: { type: 'string' },
      default: {},
      description: 'Response headers.',
    },
    ready: {
      type: 'boolean',
      default: false,
      description:
        "A readiness check on the data port (issue 15): this answer while the gateway takes traffic, 503 `NOT_READY` (JSON) from the moment a shutdown's drain starts, so a load balancer stops sending before connections close.",
    },
  },
};

/**
 * Issue 5: the engine's own `multiplex:` schema (src/multiplex/schema.ts, which also compiles
 * it), with this loader's one-line message for its duration and size values.
 */
const multiplexRouteSchema: Schema = {
  ...multiplexSchema,
  description: 'Answer with a batch: run the HTTP requests listed in the body, answer every result.',
  properties: Object.fromEntries(
    Object.entries(multiplexSchema.properties).map(([key, s]) => [
      key,
      'anyOf' in s ? { ...s, errorMessage: SIZE_KEYS.has(key) ? SIZE_HINT : DURATION_HINT } : s,
    ]),
  ),
};

/** `100/s`, `20/m`, `1000/h`: a rate (issue 6). */
const RATE_PATTERN = '^\\d+(\\.\\d+)?/(s|m|h)$';
const rate = (description: string, dflt?: null): Schema => ({
  description,
  anyOf: [{ type: 'string', pattern: RATE_PATTERN }, ...(dflt === null ? [{ type: 'null' }] : [])],
  errorMessage: 'must be a rate such as 100/s, 20/m or 1000/h',
  ...(dflt === undefined ? {} : { default: dflt }),
});

/** Issue 6: accept now, deliver later (src/defer/). */
const deferSchema: Schema = {
  description:
    'Answer at once (after the request is durably stored in the queue) and deliver it to a pool later, with retries.',
  type: 'object',
  additionalProperties: false,
  required: ['pool'],
  properties: {
    pool: {
      type: 'string',
      description: 'Name of the pool deliveries go to (same selectors and health as proxy routes).',
    },
    status: {
      description:
        'Status of the answer once the job is stored (any 2xx-5xx: asyncproxy users may answer what their clients expect, issue 13).',
      type: 'integer',
      minimum: 200,
      maximum: 599,
      default: 202,
    },
    body: {
      description:
        '`id`: the answer is `{"id": "<job id>"}` (JSON); `empty`: no body at all, as asyncproxy answers. The `x-manifold-job-id` header is sent either way.',
      type: 'string',
      enum: ['id', 'empty'],
      default: 'id',
    },
    host: {
      description:
        '`preserve` delivers with the downstream Host; `target` uses the target URL host; anything else is sent as is.',
      type: 'string',
      minLength: 1,
      default: 'preserve',
    },
    max_attempts: {
      description: 'Delivery attempts before the job becomes a dead letter (kept, with its last error).',
      type: 'integer',
      minimum: 1,
      maximum: 100000,
      default: 10,
    },
    rate: rate(
      'Most deliveries started per second, per gateway process that delivers (bursts of a tenth of a second); null = no limit.',
      null,
    ),
    concurrency: {
      description: 'Most deliveries of this route in flight at once, per gateway process that delivers.',
      type: 'integer',
      minimum: 1,
      maximum: 10000,
      default: 32,
    },
    success: statusList(
      'Statuses that complete a job: codes (`204`), ranges (`200-299`) or classes (`2xx`). Every code is exact: `200` is 200 only (unlike `terminal`). Any other answer, or none, is retried.',
      '200-299',
    ),
    backoff: {
      description: 'Delay before a failed delivery is tried again: exponential, capped, with jitter.',
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        base: duration('Delay scale of the first retry (doubles per attempt).', '1s'),
        max: duration('Longest delay between two attempts.', '5m'),
        jitter: {
          description:
            '`full` (uniform up to the delay: spreads retries of jobs that failed together), `decorrelated`, or `none` (exact delays).',
          type: 'string',
          enum: ['full', 'decorrelated', 'none'],
          default: 'full',
        },
      },
    },
    lease: duration(
      'How long a claim holds a job without news from its deliverer (issue 16): renewed every third of it while the delivery runs, so it need not outlast the route timeout; a job whose gateway died is taken by another within about this long. At least 1s; shorter heals faster, longer tolerates longer stalls of a gateway or its store (a stall past it may deliver a job twice).',
      '30s',
    ),
    max_body_bytes: size(
      'Largest request body stored (413 beyond); the body is kept whole in the queue.',
      '1MiB',
    ),
    overflow: {
      description:
        "Deliver directly while under `rate` and queue only the excess (asyncproxy's enqueue rate). The answer waits for the target; a failed direct delivery is queued. Absent = always queue first.",
      type: 'object',
      additionalProperties: false,
      required: ['rate'],
      properties: {
        rate: {
          description:
            "Direct deliveries per second, per process that accepts; `unlimited` = every request is delivered directly and only failures are queued (asyncproxy's `enqueue_enabled: false`).",
          anyOf: [{ type: 'string', pattern: RATE_PATTERN }, { const: 'unlimited' }],
          errorMessage: 'must be a rate such as 100/s, 20/m or 1000/h, or unlimited',
        },
        burst: {
          description:
            'Direct deliveries allowed at once after a quiet spell (token bucket size); default a tenth of a second of `rate`, at least 1. asyncproxy: one second of its rate.',
          type: 'integer',
          minimum: 1,
          maximum: 1000000,
        },
      },
    },
  },
};

/** Issue 17: tunnels for `CONNECT host:port` (src/tunnel/connect.ts). */
const connectSchema: Schema = {
  description:
    'Answer `CONNECT host:port` with `200 Connection Established` and pipe bytes both ways, to a destination the `allow` list names or to a target of `pool`. Only CONNECT requests take a connect route; the route `match.host` is matched against the requested host.',
  type: 'object',
  additionalProperties: false,
  properties: {
    allow: {
      description:
        'Destinations a tunnel may go to: host names, `*.domain` (any name below domain), `*` (any public name) and CIDRs or IPs. Every name is resolved and each address checked before dialing (the multiplex guard): loopback, private, link-local, metadata and other special-use addresses are refused (403) unless inside a CIDR listed here. Risk: listing internal ranges lets proxy clients reach internal services.',
      type: 'array',
      minItems: 1,
      items: { type: 'string', minLength: 1 },
    },
    ports: {
      description: 'Destination ports allowed with `allow`: ports (`443`) and ranges (`8000-8999`). Any other port is refused (403).',
      type: 'array',
      minItems: 1,
      items: {
        anyOf: [
          { type: 'integer', minimum: 1, maximum: 65535 },
          { type: 'string', pattern: '^\\d{1,5}(-\\d{1,5})?$' },
        ],
        errorMessage: 'must be a port (443) or a range (8000-8999)',
      },
      default: [443],
    },
    pool: {
      description:
        'A fixed destination instead of `allow`: every tunnel goes to a target of this pool (its selector; a target that refuses the connection counts against its passive health and the next one is tried). The requested host:port only selects the route.',
      type: 'string',
    },
    auth: {
      description:
        'Proxy authentication: a `Proxy-Authorization: Basic` header must carry one of these credentials, else 407 with `Proxy-Authenticate`. Compared in constant time.',
      type: 'object',
      additionalProperties: false,
      properties: {
        realm: {
          description: 'The realm named in the 407 challenge.',
          type: 'string',
          pattern: '^[\\x20-\\x21\\x23-\\x5b\\x5d-\\x7e]{1,100}$',
          default: 'manifold',
        },
        users: {
          description: 'Credentials: a list of `{user, password}`.',
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['user', 'password'],
            properties: {
              user: { type: 'string', pattern: '^[^:\\s]+$', description: 'User name (no colon).' },
              password: { type: 'string', minLength: 1, description: 'Password.' },
            },
          },
        },
        file: {
          description:
            'A file of `user:password` lines (blank lines and `#` comments skipped), read when the config is loaded or reloaded; added to `users`.',
          type: 'string',
          minLength: 1,
        },
      },
    },
    connect_timeout: duration('Time allowed to resolve and connect to the destination (504 beyond it).', '10s'),
    max_duration: duration('Longest life of one tunnel, however busy; 0 = none. Idle tunnels are closed by the route `tunnel_idle_timeout`.', '0s'),
  },
};

const HEADER_NAME = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";

/** A PEM certificate file and its key (issue 14). */
const certPairProperties: Record<string, Schema> = {
  cert: { type: 'string', minLength: 1, description: 'PEM certificate file (the chain: leaf first).' },
  key: { type: 'string', minLength: 1, description: 'PEM private key file of that certificate.' },
};

/** Issue 14, item 2: TLS termination on a listener. */
const tlsSchema: Schema = {
  description:
    'Terminate TLS on this listener: a default certificate, more chosen by SNI, client certificates (mTLS). Certificate files are re-read on SIGHUP, `POST /config/reload` and when they change.',
  type: 'object',
  additionalProperties: false,
  required: ['cert', 'key'],
  properties: {
    ...certPairProperties,
    certificates: {
      description:
        'More certificates, chosen by the SNI name the client sends: exact names first, then `*.example.com` wildcards (one label); names not listed get the default `cert`.',
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['cert', 'key'],
        properties: {
          ...certPairProperties,
          names: {
            description:
              "SNI names this certificate serves (`a.example.com`, `*.example.com`); default: the certificate's DNS subject alternative names (or its CN).",
            type: 'array',
            items: { type: 'string', pattern: '^(\\*\\.)?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*$' },
            minItems: 1,
          },
        },
      },
      default: [],
    },
    min_version: {
      description: 'Oldest TLS version accepted (older handshakes fail); ciphers and curves are Node\'s defaults.',
      type: 'string',
      enum: ['TLSv1.2', 'TLSv1.3'],
      default: 'TLSv1.2',
    },
    client_ca: {
      description:
        'PEM file of the CA(s) client certificates must be signed by (mTLS); null = no client certificates asked for.',
      anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }],
      default: null,
    },
    client_cert: {
      description:
        'With `client_ca`: `required` (a handshake without a valid client certificate fails) or `optional` (asked for; requests without one, or with one that does not verify, are served without the subject header).',
      type: 'string',
      enum: ['required', 'optional'],
      default: 'required',
    },
    client_subject_header: {
      description:
        "Request header that carries the verified client certificate's subject (`CN=client, O=Acme`) to `match.headers` and to the target; any copy a client sends is removed on every listener. null = none.",
      anyOf: [{ type: 'string', pattern: HEADER_NAME }, { type: 'null' }],
      default: null,
    },
  },
};

/** Issue 14, item 1: one socket the data plane accepts on. */
const listenerSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['port'],
  properties: {
    name: {
      description: 'Name for `match.listener`, logs and metrics (default `listener-N`, N its index).',
      type: 'string',
      pattern: NAME_PATTERN,
    },
    host: { type: 'string', default: '0.0.0.0', description: 'Address to bind.' },
    port: { type: 'integer', minimum: 0, maximum: 65535, description: 'Port (0 = any free one).' },
    mode: {
      description:
        '`http` (requests, routed by `routes`) or `tcp` (connections, routed by their first bytes through `tcp.routes`, then piped both ways; issue 17). A tcp listener takes no `tls`, `http2` or `redirect_https`.',
      type: 'string',
      enum: ['http', 'tcp'],
      default: 'http',
    },
    tcp: tcpSchema,
    tls: tlsSchema,
    http2: {
      description:
        'Speak HTTP/2: with `tls`, offered by ALPN next to HTTP/1.1; without, h2c with prior knowledge, HTTP/1.1 still served on the same port (told apart by the first bytes).',
      type: 'boolean',
      default: false,
    },
    redirect_https: {
      description:
        'Answer every request with a redirect to `https://<host>[:port]<path>` instead of routing it; routes whose `match.listener` names this listener are still served (ACME http-01 challenges).',
      type: 'object',
      additionalProperties: false,
      properties: {
        port: {
          description: 'Port in the Location (443 is left out of it).',
          type: 'integer',
          minimum: 1,
          maximum: 65535,
          default: 443,
        },
        status: {
          description: 'Redirect status: 301, 302, 307 or 308 (308 keeps the method and body).',
          type: 'integer',
          enum: [301, 302, 307, 308],
          default: 308,
        },
      },
    },
  },
};

const routeSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['match'],
  properties: {
    id: {
      description: 'Route id used in logs and metrics (default: `route-N`, N its index).',
      type: 'string',
      pattern: NAME_PATTERN,
    },
    match: matchSchema,
    proxy: proxySchema,
    respond: respondSchema,
    multiplex: multiplexRouteSchema,
    defer: deferSchema,
    connect: connectSchema,
    timeout: duration('One overall deadline for the whole exchange, body included; 0 = none.', '60s'),
    headers_timeout: duration('Time a target may take to send its response headers.', '30s'),
    idle_timeout: duration('Longest pause allowed between two chunks of the response body.', '30s'),
    tunnel_idle_timeout: duration(
      'An upgraded connection (WebSocket) or a CONNECT tunnel with no byte in either direction for this long is closed; 0 = never. Longer than the ping interval of the applications it carries.',
      '5m',
    ),
    max_body_bytes: size(
      'Largest request body accepted (413 beyond); null = unlimited (bodies stream).',
      null,
    ),
  },
};

export const configSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    listen: object('Where the data plane listens: the one-listener shorthand of `listeners` (giving both is an error).', {
      host: { type: 'string', default: '0.0.0.0', description: 'Address to bind.' },
      port: {
        type: 'integer',
        minimum: 0,
        maximum: 65535,
        default: 8080,
        description: 'Port (0 = any free one).',
      },
    }),
    listeners: {
      description:
        'The sockets the data plane accepts on (issue 14), each plain or TLS, HTTP/1.1 or also HTTP/2; every worker binds every listener. Excludes `listen` (its one-listener shorthand).',
      type: 'array',
      items: listenerSchema,
      minItems: 1,
    },
    workers: {
      description:
        'Worker processes: `auto` (one per core) or a number; 0 or 1 runs everything in one process.',
      anyOf: [{ const: 'auto' }, { type: 'integer', minimum: 0, maximum: 1024 }],
      default: 'auto',
      errorMessage: 'must be auto or a number',
    },
    limits: object('Inbound limits that protect every worker.', {
      max_header_bytes: size('Largest request head (431 beyond).', '16KiB'),
      headers_timeout: duration('Time a client has to send its request headers (slowloris guard).', '10s'),
      request_timeout: duration(
        'Time a client has to send its whole request; 0 = none (long uploads).',
        '5m',
      ),
      keep_alive_timeout: duration('How long an idle downstream connection is kept open.', '5s'),
      max_requests_per_socket: { type: 'integer', minimum: 0, default: 0, description: '0 = unlimited.' },
      max_inflight_per_client: {
        description:
          'Requests in flight per client address (the TCP peer), per worker; beyond it 429 `CLIENT_LIMIT`, so one client cannot hold every connection to a target. Behind a load balancer every request has its address: raise it, or null = no cap.',
        anyOf: [{ type: 'integer', minimum: 1 }, { type: 'null' }],
        default: 64,
      },
      write_idle_timeout: duration(
        'An answer whose bytes stop leaving for this long (the client stopped reading) is cut, and its upstream attempt aborted; 0 = never.',
        '30s',
      ),
      body_idle_timeout: duration(
        'A request body from which no byte arrives for this long (while Manifold reads) is cut: 408 `REQUEST_TIMEOUT`; 0 = never.',
        '30s',
      ),
      http2_max_concurrent_streams: {
        description: 'HTTP/2: streams (requests) a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).',
        type: 'integer',
        minimum: 1,
        maximum: 10000,
        default: 100,
      },
      http2_max_header_list_size: size(
        'HTTP/2: largest decoded request header list (SETTINGS_MAX_HEADER_LIST_SIZE); a larger one resets the stream.',
        '32KiB',
      ),
    }),
    forwarding: object('What the gateway adds to the requests it forwards, and how it spots a forwarding loop.', {
      via: {
        type: 'string',
        pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]{1,64}$',
        default: 'manifold',
        description:
          'The pseudonym in the `Via: 1.1 <via>` entry added to requests and answers; gateways that should see each other as one for loop detection share it.',
      },
      loop_limit: {
        type: 'integer',
        minimum: 0,
        maximum: 100,
        default: 2,
        description:
          'A request that already carries this many `Via` entries with this pseudonym is refused with 508 `LOOP_DETECTED` (a pool that points back at the gateway ends after a few hops); 0 = never refuse.',
      },
      forwarded: {
        type: 'boolean',
        default: false,
        description:
          "Also send an RFC 7239 `Forwarded: for=…;proto=…;host=…` element on every forwarded request. A client's own `Forwarded` is always appended to, like `X-Forwarded-For`.",
      },
    }),
    shutdown: object('Graceful shutdown.', {
      grace: duration('How long in-flight requests may take to finish after SIGTERM/SIGINT.', '30s'),
      accept_grace: duration(
        'After SIGTERM/SIGINT, how long requests arriving on open keep-alive connections are still served (each answered with `Connection: close`) before idle connections are closed; within `grace`.',
        '2s',
      ),
      // Issue 13: balancing-reverse-proxy's `-stop-after`, which its own test script uses.
      after: duration(
        'Stop by itself this long after it started listening, draining as on SIGTERM, and exit 0 (tests, demos); 0 = run until a signal.',
        '0s',
      ),
    }),
    log: object('Logging (pino JSON on stdout, or text lines with `format: text`).', {
      level: {
        type: 'string',
        enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
        default: 'info',
        description: 'Lowest level written.',
      },
      access: { type: 'boolean', default: true, description: 'One access-log line per request.' },
      format: {
        type: 'string',
        enum: ['json', 'text'],
        default: 'json',
        description:
          "`json`: one pino JSON object per line. `text`: Go `log`-style lines as balancing-reverse-proxy writes them (`<prefix> 2006/01/02 15:04:05 request / served in 1.2ms by endpoint 0`); fields other than the message become `key=value`. Text is for people; JSON keeps every field for machines.",
      },
      text: object('The header of `format: text` lines (Go `log` flags).', {
        prefix: { type: 'string', default: '', description: 'Written first, then a space (empty: nothing).' },
        date: { type: 'boolean', default: true, description: 'The local date, `2006/01/02`.' },
        time: { type: 'boolean', default: true, description: 'The local time, `15:04:05`.' },
        microseconds: {
          type: 'boolean',
          default: false,
          description: 'Microseconds after the time, `15:04:05.000000` (implies `time`).',
        },
        utc: { type: 'boolean', default: false, description: 'Date and time in UTC instead of local time.' },
      }),
    }),
    pools: {
      description: 'Named pools of targets.',
      type: 'object',
      propertyNames: { pattern: NAME_PATTERN },
      additionalProperties: poolSchema,
      default: {},
    },
    admin: object('The admin API (fastify) on its own port: pools, targets, stats, reload.', {
      enabled: { type: 'boolean', default: true, description: 'Serve the admin API.' },
      host: {
        type: 'string',
        default: '127.0.0.1',
        description: 'Address to bind; anything but loopback requires `token`.',
      },
      port: {
        type: 'integer',
        minimum: 0,
        maximum: 65535,
        default: 8687,
        description: 'Port (0 = any free one, logged at start).',
      },
      token: {
        description:
          'Bearer token every admin call must send (`Authorization: Bearer …`; the dashboard signs a browser in with it, see README); empty or null = none. Read it from the environment: `$MANIFOLD_ADMIN_TOKEN` with a `:-` default.',
        anyOf: [{ type: 'string' }, { type: 'null' }],
        default: null,
      },
      default_pool: {
        type: 'string',
        default: 'default',
        description: 'The pool `POST /servers` and `DELETE /servers/:ip/:port` act on.',
      },
      drain_timeout: duration(
        "Longest `DELETE …/targets/:id?wait=true` waits for a removed target's in-flight attempts.",
        '30s',
      ),
      allowed_hosts: {
        type: 'array',
        items: { type: 'string', minLength: 1, maxLength: 260 },
        default: [],
        description:
          'More `Host` values the admin API answers (`name` for any port, or `name:port`), besides its own address (and `localhost`, `127.0.0.1`, `[::1]` for a loopback bind). Any other Host gets 403 `FORBIDDEN_HOST`: a DNS-rebinding page cannot reach the API. Risk: every name here may be pointed at the admin port by anyone controlling its DNS.',
      },
    }),
    metrics: object(
      'Prometheus metrics (issue 7), summed over every process: served by the admin API at `path` (same token), and on a port of their own when `port` is set.',
      {
        enabled: {
          type: 'boolean',
          default: true,
          description: 'Count and serve metrics; false = nothing is counted on the request path.',
        },
        path: {
          type: 'string',
          pattern: '^/[A-Za-z0-9._~/-]*$',
          default: '/metrics',
          description: 'Path of the exposition on the admin port (and on `port`).',
        },
        host: {
          type: 'string',
          default: '127.0.0.1',
          description: 'Address the metrics port binds (with `port`).',
        },
        asyncproxy: {
          type: 'boolean',
          default: false,
          description:
            "Also export asyncproxy's metric names (`http_requests_total`, `http_response_time_seconds`, `http_proxy_response_time_seconds`, `queue_total_size`), translated at scrape time from Manifold's own; their `path` label is the route id (issue 13).",
        },
        port: {
          description:
            'A port of their own for scrapers without credentials (no token is asked there: bind it where only Prometheus reaches); null = admin port only.',
          anyOf: [{ type: 'integer', minimum: 0, maximum: 65535 }, { type: 'null' }],
          default: null,
        },
      },
    ),
    tracing: object('W3C trace context (issue 7): `traceparent` and `tracestate` on what Manifold sends.', {
      enabled: {
        type: 'boolean',
        default: true,
        description:
          'Send `traceparent` with every attempt and delivery: the downstream trace id with a new span id each, or a new trace when none came; `tracestate` passes through.',
      },
      sampled: {
        type: 'boolean',
        default: false,
        description:
          'The sampled flag of traces Manifold starts itself (no valid `traceparent` came); an incoming flag is kept as it is.',
      },
    }),
    state_file: {
      description:
        'JSON file keeping pool changes made through the admin API, read back at start; null = changes last until restart.',
      anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }],
      default: null,
    },
    cluster: object(
      'Several gateways, one control plane (issue 16): admin pool changes, the instance registry and cluster-wide figures on a PostgreSQL they share. Absent = this gateway alone.',
      {
        store: {
          description:
            '`postgres` = share admin changes and the instance registry through PostgreSQL; null = off (each gateway on its own).',
          anyOf: [{ type: 'string', enum: ['postgres'] }, { type: 'null' }],
          errorMessage: 'must be postgres or null',
          default: null,
        },
        url: {
          description:
            "PostgreSQL connection, the same forms as `queue.url`; null = the queue's (`queue.url`) when `queue.driver` is postgres.",
          anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }],
          errorMessage: 'must be a postgres:// URL or a libpq key=value string',
          default: null,
        },
        schema: {
          description: 'PostgreSQL schema of the cluster tables (created at start); null = `queue.schema`.',
          anyOf: [{ type: 'string', pattern: '^[a-z_][a-z0-9_]{0,47}$' }, { type: 'null' }],
          errorMessage: 'must be lower-case letters, digits and _ (at most 48), or null',
          default: null,
        },
        instance: {
          description:
            "This gateway's id in the instance registry; null = `queue.instance`, else `<hostname>:<listen.port>` (with `listen.port: 0`, `<hostname>:pid<pid>`). Different for every gateway.",
          anyOf: [{ type: 'string', minLength: 1, maxLength: 200 }, { type: 'null' }],
          errorMessage: 'must be a name of 1 to 200 characters, or null',
          default: null,
        },
        heartbeat: duration(
          'How often this gateway writes its registry row and checks the stored change version (which heals a missed notification).',
          '1s',
        ),
        gone_after: duration('An instance whose last heartbeat is older than this is listed as `gone`.', '10s'),
      },
    ),
    queue: object('The durable queue behind `defer` routes (issue 6); opened only when a route defers.', {
      driver: {
        description:
          '`sqlite` (one file shared by the processes of one machine) or `postgres` (shared by several gateways).',
        type: 'string',
        enum: ['sqlite', 'postgres'],
        default: 'sqlite',
      },
      path: {
        description: 'SQLite: the database file (its directory is created).',
        type: 'string',
        minLength: 1,
        default: './data/queue.db',
      },
      url: {
        description:
          "PostgreSQL: connection URL `postgres://user:pass@host:5432/db`, or libpq's `host=… port=… user=… dbname=…` (issue 13); required with `postgres`.",
        anyOf: [{ type: 'string', minLength: 1 }, { type: 'null' }],
        errorMessage: 'must be a postgres:// URL or a libpq key=value string',
        default: null,
      },
      schema: {
        description: 'PostgreSQL: the schema holding the queue tables, created and migrated at start.',
        type: 'string',
        pattern: '^[a-z_][a-z0-9_]{0,47}$',
        default: 'manifold',
      },
      pool_size: {
        description: 'PostgreSQL: connections per gateway process.',
        type: 'integer',
        minimum: 1,
        maximum: 1000,
        default: 10,
      },
      busy_timeout: duration(
        "SQLite: how long a write waits for another process's lock before the request gets 503.",
        '5s',
      ),
      commit_timeout: duration(
        'How long a deferred request waits for its durable commit (and an admin queue read for its answer) before 503 `QUEUE_UNAVAILABLE`; a job whose commit lands after that is a dead letter, never delivered on its own. 0 = wait as long as the store.',
        '5s',
      ),
      max_waiting: {
        description:
          'Accepted requests waiting for their commit, per process; beyond it: 503 `QUEUE_UNAVAILABLE`.',
        type: 'integer',
        minimum: 1,
        maximum: 10000000,
        default: 10000,
      },
      retention: {
        description:
          'How long delivered jobs are kept (an `Idempotency-Key` is remembered as long); null = forever (the file grows). Dead letters are never purged.',
        anyOf: [
          { type: 'string', pattern: DURATION_PATTERN },
          { type: 'integer', minimum: 0 },
          { type: 'null' },
        ],
        errorMessage: 'must be a duration such as 1h, or null',
        default: '24h',
      },
      janitor_interval: duration('How often delivered jobs older than `retention` are purged.', '1m'),
      instance: {
        description:
          "This gateway's name in the queue (issue 16): stored with every claim, and at start the gateway releases at once the jobs its previous life under this name left in flight (a kill -9), without waiting for their lease. Must differ between gateways sharing a queue and stay the same across restarts. null = `<hostname>:<listen.port>`; with `listen.port: 0` a name unique to the process (its jobs wait for their lease after a crash).",
        anyOf: [{ type: 'string', minLength: 1, maxLength: 200 }, { type: 'null' }],
        errorMessage: 'must be a name of 1 to 200 characters, or null',
        default: null,
      },
    }),
    routes: {
      description: 'Ordered routes; the first that matches takes the request.',
      type: 'array',
      items: routeSchema,
      default: [],
    },
  },
};

// ---- the validated (defaults applied) config ----

export interface AdminConfig {
  enabled: boolean;
  host: string;
  port: number;
  token: string | null;
  default_pool: string;
  drain_timeout: Duration;
  allowed_hosts: string[];
}

/** A route's `proxy` block: where it goes, plus how attempts are spent (strategy/spec.ts). */
export interface ProxyConfig extends StrategyConfig {
  pool: string;
  host: string;
  strip_prefix?: string;
  target_header: boolean;
  exhausted?: { status: number; body: string };
}

export interface RespondConfig {
  status: number;
  body: string;
  headers: Record<string, string>;
  ready: boolean;
}

export interface RouteConfig {
  id?: string;
  match: MatchConfig;
  proxy?: ProxyConfig;
  respond?: RespondConfig;
  multiplex?: MultiplexConfig;
  defer?: DeferConfig;
  connect?: ConnectConfig;
  timeout: Duration;
  headers_timeout: Duration;
  idle_timeout: Duration;
  tunnel_idle_timeout: Duration;
  max_body_bytes: Size | null;
}

export interface MetricsConfig {
  enabled: boolean;
  path: string;
  asyncproxy: boolean;
  host: string;
  port: number | null;
}

/** Go `log`'s flags for `log.format: text` (issue 13). */
export interface LogTextConfig {
  prefix: string;
  date: boolean;
  time: boolean;
  microseconds: boolean;
  utc: boolean;
}

/** One `tls.certificates[]` entry, or the default pair. */
export interface CertPairConfig {
  cert: string;
  key: string;
  names?: string[];
}

export interface TlsConfig {
  cert: string;
  key: string;
  certificates: CertPairConfig[];
  min_version: 'TLSv1.2' | 'TLSv1.3';
  client_ca: string | null;
  client_cert: 'required' | 'optional';
  client_subject_header: string | null;
}

export interface ListenerConfig {
  name?: string;
  host: string;
  port: number;
  /** Issue 17: `tcp` listeners route connections by their first bytes (src/tcp/). */
  mode: 'http' | 'tcp';
  tcp?: TcpConfig;
  tls?: TlsConfig;
  http2: boolean;
  redirect_https?: { port: number; status: number };
}

export interface Config {
  listen: { host: string; port: number };
  /** Absent: the one listener of `listen` (config/listeners.ts `listenersOf`). */
  listeners?: ListenerConfig[];
  workers: 'auto' | number;
  limits: {
    max_header_bytes: Size;
    headers_timeout: Duration;
    request_timeout: Duration;
    keep_alive_timeout: Duration;
    max_requests_per_socket: number;
    max_inflight_per_client: number | null;
    write_idle_timeout: Duration;
    body_idle_timeout: Duration;
    http2_max_concurrent_streams: number;
    http2_max_header_list_size: Size;
  };
  forwarding: { via: string; loop_limit: number; forwarded: boolean };
  shutdown: { grace: Duration; accept_grace: Duration; after: Duration };
  log: { level: LogLevel; access: boolean; format: 'json' | 'text'; text: LogTextConfig };
  pools: Record<string, PoolConfig>;
  admin: AdminConfig;
  metrics: MetricsConfig;
  tracing: TracingConfig;
  state_file: string | null;
  cluster: ClusterConfig;
  queue: QueueConfig;
  routes: RouteConfig[];
}

/** `cluster:` (issue 16), compiled by cluster/spec.ts. */
export interface ClusterConfig {
  store: 'postgres' | null;
  url: string | null;
  schema: string | null;
  instance: string | null;
  heartbeat: Duration;
  gone_after: Duration;
}
