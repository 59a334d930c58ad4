/**
 * Header rewriting for both directions of a proxied exchange (RFC 9110 §7.6.1):
 * hop-by-hop headers and every header named in `Connection` are removed; `X-Forwarded-For`
 * is appended to, `X-Forwarded-Proto`/`X-Forwarded-Host` set, `Via` appended. Headers are
 * handled as flat raw [name, value, name, value…] lists so duplicates (Set-Cookie) and
 * original casing survive untouched.
 */
import { attemptTraceparent, TRACEPARENT, TRACESTATE, type TraceContext } from '../observability/trace.ts';

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

export const VIA = '1.1 manifold';

/** Lower-case names listed in Connection headers (there may be several, comma separated), added to `into`. */
function connectionTokens(raw: readonly string[], into: Set<string> | null = null): Set<string> | null {
  let tokens = into;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 10 && raw[i].toLowerCase() === 'connection') {
      for (const t of raw[i + 1].split(',')) {
        const name = t.trim().toLowerCase();
        if (name) (tokens ??= new Set()).add(name);
      }
    }
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

export interface ForwardedInfo {
  clientIp: string;
  proto: 'http' | 'https';
  /** Host header the client sent ('' when none). */
  host: string;
  requestId: string;
  /** Host header to send: undefined keeps the client's. */
  hostOverride: string | undefined;
  /**
   * The request's trace (issue 7): `traceparent` is replaced by one with a new span id, and
   * `tracestate` is dropped when the trace is new. Absent (`tracing.enabled: false`): both
   * pass as they came.
   */
  trace?: TraceContext | null;
  /** For upgrade requests: keep `Upgrade`/`Connection: upgrade` (undici sets them itself). */
}

/**
 * The request headers to send to a target. `expect` is dropped too: the listener already
 * answered `100 Continue`, and undici refuses to send it.
 */
export function outboundRequestHeaders(raw: readonly string[], info: ForwardedInfo): string[] {
  const tokens = connectionTokens(raw);
  const out: string[] = [];
  let xff = '';
  let via = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (isHopByHop(lower, tokens)) continue;
    switch (lower) {
      case 'host':
        out.push(name, info.hostOverride ?? raw[i + 1]);
        continue;
      case 'x-forwarded-for':
        xff = xff ? `${xff}, ${raw[i + 1]}` : raw[i + 1];
        continue;
      case 'via':
        via = via ? `${via}, ${raw[i + 1]}` : raw[i + 1];
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
  if (info.trace != null) out.push(TRACEPARENT, attemptTraceparent(info.trace));
  if (info.hostOverride !== undefined && info.host === '') out.push('host', info.hostOverride);
  out.push(
    'x-forwarded-for',
    xff ? `${xff}, ${info.clientIp}` : info.clientIp,
    'x-forwarded-proto',
    info.proto,
    'via',
    via ? `${via}, ${VIA}` : VIA,
    'x-request-id',
    info.requestId,
  );
  if (info.host) out.push('x-forwarded-host', info.host);
  return out;
}

const latin1 = (v: Buffer | string): string => (typeof v === 'string' ? v : v.toString('latin1'));

/**
 * The response headers to send downstream, from undici's raw header buffers: each name and
 * value decoded once, in one pass (a `Connection` header, rare in responses, is looked for
 * among the names first); hop-by-hop values are never decoded.
 */
export function downstreamResponseHeaders(raw: readonly (Buffer | string)[], requestId: string): string[] {
  let tokens: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length !== 10) continue;
    const name = latin1(raw[i]);
    if (name.toLowerCase() === 'connection') tokens = connectionTokens([name, latin1(raw[i + 1])], tokens);
  }
  const out: string[] = [];
  let via = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = latin1(raw[i]);
    const lower = name.toLowerCase();
    if (isHopByHop(lower, tokens) || lower === 'x-request-id') continue;
    const value = latin1(raw[i + 1]);
    if (lower === 'via') via = via ? `${via}, ${value}` : value;
    else out.push(name, value);
  }
  out.push('via', via ? `${via}, ${VIA}` : VIA, 'x-request-id', requestId);
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
