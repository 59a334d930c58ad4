/**
 * Validates a batch body (`POST /multiplex`) into a `Batch`, merging `defaults` into every
 * request. Every problem is a GatewayError whose message names the path, e.g.
 * `requests[3].uri: not an absolute http(s) URL`. Past this point nothing re-checks shapes.
 */
import { isUtf8 } from 'node:buffer';
import { GatewayError } from '../errors.ts';
import type { MultiplexOptions } from './schema.ts';
import type { Batch, BatchItem } from './types.ts';

type Json = Record<string, unknown>;

interface Template {
  method?: string;
  headers?: Map<string, readonly [string, string]>;
  body?: Buffer;
}

export const METHODS = Object.freeze(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const BATCH_KEYS = new Set(['timeout_msec', 'follow_redirects', 'defaults', 'requests']);
const TEMPLATE_KEYS = new Set(['method', 'headers', 'body', 'body_base64']);
const ITEM_KEYS = new Set([...TEMPLATE_KEYS, 'uri', 'timeout_msec', 'follow_redirects']);
/** Framing and connection headers are the gateway's to set; `host` would bypass the target check's intent. */
export const GATEWAY_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'content-length',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'http2-settings',
]);
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const MAX_URI = 8192;

/** A batch item's target URL, or the problem with it (the message after `uri: `). */
export function targetUrl(uri: string): URL | string {
  if (uri.length > MAX_URI) return `longer than ${MAX_URI} characters`;
  const url = URL.parse(uri);
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || !url.hostname) {
    return 'not an absolute http(s) URL';
  }
  if (url.username || url.password) return 'credentials in the URL are not allowed';
  url.hash = '';
  return url;
}

function fail(path: string, problem: string): never {
  throw new GatewayError('INVALID_BODY', `${path}: ${problem}`);
}

function child(path: string, key: string): string {
  const name = /^[A-Za-z_][\w-]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
  return path ? path + name : name.startsWith('.') ? key : name;
}

/** `base` is the path prefix of the object's fields ('' for the body itself). */
function object(value: unknown, path: string, keys?: ReadonlySet<string>, base = path): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, 'must be an object');
  if (keys) for (const k of Object.keys(value)) if (!keys.has(k)) fail(child(base, k), 'unknown field');
  return value as Json;
}

function string(value: unknown, path: string): string {
  if (typeof value !== 'string') fail(path, 'must be a string');
  return value;
}

function boolean(value: unknown, path: string): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') fail(path, 'must be a boolean');
  return value;
}

function integer(value: unknown, path: string, max: number, why: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > max) {
    fail(path, `must be an integer from 1 to ${max}${why}`);
  }
  return value as number;
}

function template(raw: Json, path: string): Template {
  const out: Template = {};
  if (raw.method !== undefined) {
    out.method = string(raw.method, child(path, 'method'));
    if (!METHODS.includes(out.method)) fail(child(path, 'method'), `must be one of ${METHODS.join(', ')}`);
  }
  if (raw.headers !== undefined) {
    const hpath = child(path, 'headers');
    out.headers = new Map();
    for (const [name, value] of Object.entries(object(raw.headers, hpath))) {
      const at = child(hpath, name);
      const lower = name.toLowerCase();
      if (!TOKEN.test(name)) fail(at, 'not a valid header name');
      if (GATEWAY_HEADERS.has(lower)) fail(at, 'not allowed (set by the gateway)');
      if (out.headers.has(lower)) fail(at, 'duplicate header (names are case-insensitive)');
      if (!FIELD_VALUE.test(string(value, at))) fail(at, 'not a valid header value');
      out.headers.set(lower, [name, value as string]);
    }
  }
  // Issue 12: `"body": null` (what Octoplex's client sends for no body) means no body.
  if (raw.body != null && raw.body_base64 != null) {
    fail(child(path, 'body_base64'), 'not allowed together with body');
  }
  if (raw.body != null) out.body = Buffer.from(string(raw.body, child(path, 'body')), 'utf8');
  if (raw.body_base64 != null) {
    const at = child(path, 'body_base64');
    if (!BASE64.test(string(raw.body_base64, at))) fail(at, 'not valid base64');
    out.body = Buffer.from(raw.body_base64 as string, 'base64');
  }
  return out;
}

function item(
  raw: unknown,
  path: string,
  defaults: Template,
  batchTimeout: number,
  follow: boolean,
): BatchItem {
  const r = object(raw, path, ITEM_KEYS);
  if (r.uri === undefined) fail(child(path, 'uri'), 'required');
  const url = targetUrl(string(r.uri, child(path, 'uri')));
  if (typeof url === 'string') fail(child(path, 'uri'), url);
  const own = template(r, path);
  const headers = new Map(defaults.headers);
  for (const [k, v] of own.headers ?? []) headers.set(k, v);
  const timeoutMs = integer(
    r.timeout_msec,
    child(path, 'timeout_msec'),
    batchTimeout,
    ' (the batch timeout_msec)',
  );
  return {
    method: own.method ?? defaults.method ?? 'GET',
    url,
    headers: [...headers.values()],
    body: own.body ?? defaults.body ?? null,
    timeoutMs: timeoutMs ?? batchTimeout,
    followRedirects: boolean(r.follow_redirects, child(path, 'follow_redirects')) ?? follow,
  };
}

/**
 * Parses and validates a batch body. Throws GatewayError BODY_TOO_LARGE (413) beyond
 * `max_body_bytes` and INVALID_BODY (400) for anything else wrong, naming the path.
 */
export function parseBatch(buf: Buffer, opts: MultiplexOptions): Batch {
  if (buf.length > opts.maxBodyBytes) {
    throw new GatewayError('BODY_TOO_LARGE', `batch body is larger than ${opts.maxBodyBytes} bytes`);
  }
  if (!isUtf8(buf)) fail('body', 'not valid UTF-8');
  let doc: unknown;
  try {
    doc = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    fail('body', `invalid JSON (${(err as Error).message})`);
  }
  const root = object(doc, 'body', BATCH_KEYS, '');
  const timeoutMs =
    integer(root.timeout_msec, 'timeout_msec', opts.maxTimeoutMs, ' (max_timeout of this route)') ??
    opts.maxTimeoutMs;
  const follow = boolean(root.follow_redirects, 'follow_redirects') ?? false;
  const defaults =
    root.defaults === undefined ? {} : template(object(root.defaults, 'defaults', TEMPLATE_KEYS), 'defaults');
  if (root.requests === undefined) fail('requests', 'required');
  if (!Array.isArray(root.requests)) fail('requests', 'must be an array');
  const n = root.requests.length;
  if (n === 0) fail('requests', 'must not be empty');
  if (n > opts.maxRequests) fail('requests', `at most ${opts.maxRequests} requests are allowed, got ${n}`);
  return {
    timeoutMs,
    items: root.requests.map((r, i) => item(r, `requests[${i}]`, defaults, timeoutMs, follow)),
  };
}
