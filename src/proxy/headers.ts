/**
 * Header rewriting for both directions of a proxied exchange (RFC 9110 §7.6.1):
 * hop-by-hop headers and every header named in `Connection` are removed; `X-Forwarded-For`
 * is appended to, `X-Forwarded-Proto`/`X-Forwarded-Host` set, `Via` appended. Headers are
 * handled as flat raw [name, value, name, value…] lists so duplicates (Set-Cookie) and
 * original casing survive untouched. A client's own `Forwarded` (RFC 7239) is appended to like
 * `X-Forwarded-For`, and sent on every request with `forwarding.forwarded: true` (issue 15).
 */
import { GatewayError } from '../errors.ts';
import { attemptTraceparent, TRACEPARENT, TRACESTATE, type TraceContext } from '../observability/trace.ts';
import type { Forward, OutboundRequest, ResponseHeaders } from './forward.ts';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The top-level `forwarding` key, compiled once (config/compile.ts). */
export interface Forwarding {
  /** The whole Via element this gateway adds, `1.1 <pseudonym>`. */
  readonly via: string;
  /** The element for a request received over HTTP/2, `2 <pseudonym>` (RFC 9110 §7.6.3; issue 14). */
  readonly viaHttp2: string;
  /** Lower-case pseudonym, to recognise our own entries in a request's Via. */
  readonly pseudonym: string;
  /** A request already carrying this many of our Via entries is refused (508); 0 = never. */
  readonly loopLimit: number;
  /** Also send RFC 7239 `Forwarded` when the client sent none. */
  readonly forwarded: boolean;
}

export const DEFAULT_FORWARDING: Forwarding = Object.freeze({
  via: '1.1 manifold',
  viaHttp2: '2 manifold',
  pseudonym: 'manifold',
  loopLimit: 2,
  forwarded: false,
});

export const VIA = DEFAULT_FORWARDING.via;

export function compileForwarding(cfg: { via: string; loop_limit: number; forwarded: boolean }): Forwarding {
  return Object.freeze({
    via: `1.1 ${cfg.via}`,
    viaHttp2: `2 ${cfg.via}`,
    pseudonym: cfg.via.toLowerCase(),
    loopLimit: cfg.loop_limit,
    forwarded: cfg.forwarded,
  });
}

/**
 * Issue 15, item 10: a request that already passed this gateway (or another one with the same
 * pseudonym) `loopLimit` times is refused with 508 `LOOP_DETECTED`, so a pool that points at
 * the gateway itself ends after a few hops instead of looping until the route timeout. Two
 * Manifolds chained on purpose (edge → inner) stay under the default of 2.
 */
export function checkLoop(raw: readonly string[], forwarding: Forwarding): void {
  const limit = forwarding.loopLimit;
  if (limit === 0) return;
  let ours = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length !== 3 || raw[i].toLowerCase() !== 'via') continue;
    // Via = #( received-protocol RWS received-by [ RWS comment ] ), RFC 9110 §7.6.3.
    for (const element of raw[i + 1].split(',')) {
      const by = element.trim().split(/[ \t]+/)[1];
      if (by !== undefined && by.toLowerCase() === forwarding.pseudonym) ours++;
    }
  }
  if (ours >= limit)
    throw new GatewayError(
      'LOOP_DETECTED',
      `the request already passed ${forwarding.via.slice(4)} ${ours} times (forwarding.loop_limit ${limit}): a loop`,
    );
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** An RFC 7239 value: a token as it is, anything else quoted. */
function forwardedValue(v: string): string {
  return TOKEN.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}

/** This hop's `Forwarded` element: `for=…;proto=…[;host=…]`; an IPv6 node in brackets (§6). */
export function forwardedElement(clientIp: string, proto: string, host: string): string {
  const node = clientIp === '' ? 'unknown' : clientIp.includes(':') ? `[${clientIp}]` : clientIp;
  const element = `for=${forwardedValue(node)};proto=${proto}`;
  return host ? `${element};host=${forwardedValue(host)}` : element;
}

/** Lower-case names listed in Connection headers (there may be several, comma separated), added to `into`. */
function connectionTokens(raw: readonly string[]): Set<string> | null {
  let tokens: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toLowerCase() === 'connection') tokens = tokensOf(raw[i + 1], tokens);
  }
  return tokens;
}

/**
 * The names one Connection value lists, added to `into`. `keep-alive`, the usual whole value, is
 * hop-by-hop anyway: it makes no set (issue 11 item 4: no Set per request for it).
 */
function tokensOf(value: string, into: Set<string> | null): Set<string> | null {
  if (value.length === 10 && value.toLowerCase() === 'keep-alive') return into;
  let tokens = into;
  for (const t of value.split(',')) {
    const name = t.trim().toLowerCase();
    if (name && !HOP_BY_HOP.has(name)) (tokens ??= new Set()).add(name);
  }
  return tokens;
}

export function isHopByHop(lower: string, tokens: Set<string> | null): boolean {
  return HOP_BY_HOP.has(lower) || tokens?.has(lower) === true;
}

/** A route's `host` setting, compiled: keep the client's, use the target's, or a literal. */
export type HostMode = 'preserve' | 'target' | { readonly literal: string };

/** The Host header to send to `target` under `mode`; undefined keeps the client's. */
export function hostFor(mode: HostMode, target: { spec: { host: string } }): string | undefined {
  if (mode === 'preserve') return undefined;
  return mode === 'target' ? target.spec.host : mode.literal;
}

/**
 * A request's outbound header list, made once (issue 11 item 2), with the places of the two
 * values that differ per attempt: Host, under a `host` mode other than `preserve` (the target's
 * name, or the literal), and `traceparent` (each attempt is a span of its own of the request's
 * trace, issue 7). `for(target)` gives an attempt its list: the prepared one itself when no value
 * differs, else a copy with those set. Used by proxied requests and by deliveries.
 */
export class AttemptHeaders {
  readonly #list: string[] = [];
  readonly #mode: HostMode;
  /** Indexes of Host values set per target. */
  readonly #hosts: number[] = [];
  /** Indexes of `traceparent` values given a new span id per attempt, and their traces. */
  readonly #spans: number[] = [];
  readonly #traces: TraceContext[] = [];

  constructor(mode: HostMode) {
    this.#mode = mode;
  }

  push(name: string, value: string): void {
    this.#list.push(name, value);
  }

  /** A Host field: its value is the target's under a mode other than `preserve`. */
  pushHost(name: string, value: string): void {
    if (this.#mode !== 'preserve') this.#hosts.push(this.#list.length + 1);
    this.#list.push(name, value);
  }

  /** A `traceparent` field of `trace`, with a span id of each attempt's own. */
  pushSpan(name: string, trace: TraceContext): void {
    this.#spans.push(this.#list.length + 1);
    this.#traces.push(trace);
    this.#list.push(name, '');
  }

  /** Whether a Host field is set per target (`host` not `preserve`). */
  get overridesHost(): boolean {
    return this.#mode !== 'preserve';
  }

  /** The list for one attempt on `target` (null: no target, as when a request is stored). */
  for(target: { readonly spec: { readonly host: string } } | null): string[] {
    if (this.#hosts.length === 0 && this.#spans.length === 0) return this.#list;
    const out = this.#list.slice();
    if (this.#hosts.length > 0) {
      const host = hostFor(this.#mode, target!)!;
      for (const i of this.#hosts) out[i] = host;
    }
    for (let k = 0; k < this.#spans.length; k++) out[this.#spans[k]!] = attemptTraceparent(this.#traces[k]!);
    return out;
  }
}

/**
 * The Forward of one request whose headers were prepared once: each attempt gets its target's
 * path (`url` under the target's prefix, after `stripPrefix`) and its list from `headers`;
 * `onAttempt` hears of each target tried. Used by proxied requests and by deliveries.
 */
export function preparedForward(
  next: Forward,
  url: string,
  stripPrefix: string | null,
  headers: AttemptHeaders,
  onAttempt?: (target: Parameters<Forward>[0]) => void,
): Forward {
  return (target, r, signal) => {
    onAttempt?.(target);
    // Spelled out rather than spread: one object shape for every attempt.
    const attempt: OutboundRequest = {
      method: r.method,
      body: r.body,
      headersTimeoutMs: r.headersTimeoutMs,
      idleTimeoutMs: r.idleTimeoutMs,
      upgrade: r.upgrade,
      path: joinPath(target.spec.basePath, url, stripPrefix),
      headers: headers.for(target),
    };
    return next(target, attempt, signal);
  };
}

export interface ForwardedInfo {
  clientIp: string;
  proto: 'http' | 'https';
  /** Host header the client sent ('' when none). */
  host: string;
  requestId: string;
  /** The route's `host` setting: `preserve` keeps the client's Host; otherwise each attempt sets its own. */
  hostMode: HostMode;
  /**
   * The request's trace (issue 7): `traceparent` is replaced by one with a new span id, and
   * `tracestate` is dropped when the trace is new. Absent (`tracing.enabled: false`): both
   * pass as they came.
   */
  trace?: TraceContext | null;
  /** The request came over HTTP/2: its Via element says `2` (issue 14). */
  http2?: boolean;
  /** The `forwarding` settings (Via pseudonym, Forwarded output); default DEFAULT_FORWARDING. */
  forwarding?: Forwarding;
}

/**
 * The request headers to send to a target. `expect` is dropped too: the listener already
 * answered `100 Continue`, and undici refuses to send it. `TE: trailers` is the one hop-by-hop
 * value sent on, as this hop's own (trailers are relayed).
 */
export function outboundRequestHeaders(raw: readonly string[], info: ForwardedInfo): AttemptHeaders {
  const tokens = connectionTokens(raw);
  const out = new AttemptHeaders(info.hostMode);
  let xff = '';
  let via = '';
  let forwarded = '';
  let teTrailers = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    // HTTP/2 pseudo-headers (`:path`, `:authority`) never go to a target (issue 14); the
    // listener maps `:authority` to Host.
    if (name.charCodeAt(0) === 58) continue;
    const lower = name.toLowerCase();
    if (isHopByHop(lower, tokens)) {
      // TE is this hop's, but `trailers` in it says the client takes trailer fields: the gateway
      // relays them, so it says the same to the target (gRPC servers look for it).
      if (lower === 'te' && /(^|,)\s*trailers\s*(;|,|$)/i.test(raw[i + 1])) teTrailers = true;
      continue;
    }
    switch (lower) {
      case 'host':
        out.pushHost(name, raw[i + 1]);
        continue;
      case 'x-forwarded-for':
        xff = xff ? `${xff}, ${raw[i + 1]}` : raw[i + 1];
        continue;
      case 'via':
        via = via ? `${via}, ${raw[i + 1]}` : raw[i + 1];
        continue;
      case 'forwarded':
        forwarded = forwarded ? `${forwarded}, ${raw[i + 1]}` : raw[i + 1];
        continue;
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
      case 'x-request-id':
      case 'expect':
        continue;
      case TRACEPARENT:
        if (info.trace == null) out.push(name, raw[i + 1]);
        continue;
      case TRACESTATE:
        if (info.trace == null || info.trace.parentId !== null) out.push(name, raw[i + 1]);
        continue;
      default:
        out.push(name, raw[i + 1]);
    }
  }
  if (teTrailers) out.push('te', 'trailers');
  if (info.trace != null) out.pushSpan(TRACEPARENT, info.trace);
  if (out.overridesHost && info.host === '') out.pushHost('host', '');
  const forwarding = info.forwarding ?? DEFAULT_FORWARDING;
  const ownVia = info.http2 === true ? forwarding.viaHttp2 : forwarding.via;
  out.push('x-forwarded-for', xff ? `${xff}, ${info.clientIp}` : info.clientIp);
  out.push('x-forwarded-proto', info.proto);
  out.push('via', via ? `${via}, ${ownVia}` : ownVia);
  out.push('x-request-id', info.requestId);
  if (info.host) out.push('x-forwarded-host', info.host);
  // The client's own Forwarded follows the X-Forwarded-For rule: appended to, never passed as the
  // only claim about where the request came from (issue 15, item 11).
  if (forwarded || forwarding.forwarded) {
    const mine = forwardedElement(info.clientIp, info.proto, info.host);
    out.push('forwarded', forwarded ? `${forwarded}, ${mine}` : mine);
  }
  return out;
}

/**
 * The response headers to send downstream, from the fields undici parsed (names lowercase,
 * values decoded once: issue 11 item 4, nothing is decoded again here). Hop-by-hop fields,
 * those a `Connection` field names among them, and HTTP/2 pseudo-headers stay behind; the
 * target's Via gets this gateway's element (`ownVia`, `forwarding.via`) appended.
 */
export function downstreamResponseHeaders(
  headers: ResponseHeaders,
  requestId: string,
  ownVia: string = VIA,
): string[] {
  const connection = headers.connection;
  let tokens: Set<string> | null = null;
  if (typeof connection === 'string') tokens = tokensOf(connection, null);
  else if (connection !== undefined) for (const v of connection) tokens = tokensOf(v, tokens);
  const out: string[] = [];
  let via = '';
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || name.charCodeAt(0) === 58 /* : */ || isHopByHop(name, tokens)) continue;
    if (name === 'x-request-id') continue;
    if (name === 'via') via = typeof value === 'string' ? value : value.join(', ');
    else if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  out.push('via', via ? `${via}, ${ownVia}` : ownVia, 'x-request-id', requestId);
  return out;
}

/**
 * Fields that must not be sent in a trailer section (RFC 9110 §6.5.1: framing, routing,
 * authentication, controls), on top of the hop-by-hop ones.
 */
const NOT_IN_TRAILERS = new Set([
  'content-length',
  'content-encoding',
  'content-type',
  'content-range',
  'host',
  'authorization',
  'set-cookie',
  'cache-control',
  'expect',
  'max-forwards',
  'pragma',
  'range',
]);

/** A target's trailer fields as they may go on downstream (gRPC's `grpc-status` among them). */
export function endToEndTrailers(trailers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = Object.create(null);
  for (const name in trailers) {
    const value = trailers[name];
    const lower = name.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(lower) || NOT_IN_TRAILERS.has(lower) || lower.startsWith(':')) continue;
    out[name] = value;
  }
  return out;
}

/**
 * Joins a target's path prefix with the request path, keeping the query string:
 * target `http://t/v2` + `/users?q=1` → `/v2/users?q=1`. `stripPrefix` `/api` first turns
 * `/api/users` into `/users` (and `/api` into `/`); a path it does not prefix at a segment
 * boundary is left alone.
 */
export function joinPath(basePath: string, requestUrl: string, stripPrefix: string | null): string {
  let url = requestUrl;
  if (stripPrefix !== null && url.startsWith(stripPrefix)) {
    const rest = url.slice(stripPrefix.length);
    if (rest === '') url = '/';
    else if (rest[0] === '/') url = rest;
    else if (rest[0] === '?') url = `/${rest}`;
  }
  return basePath === '' ? url : basePath + url;
}
