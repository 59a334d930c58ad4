/**
 * Octoplex's batch format (issue 12), read from its source (src/api.rs, src/multiplexer.rs,
 * src/http_server.rs) and its test client's serde structs (tests/common/api.rs):
 *
 * - body `{"timeout_msec": u64, "requests": [{"method"?, "uri", "headers"?, "body"?}]}`, unknown
 *   fields refused (serde `deny_unknown_fields`), `timeout_msec` required, `"body": null` = none;
 * - answer `{"responses": [{"Success": {headers, status, content, duration_msec}} |
 *   {"Failure": {error, duration_msec}}]}` (an externally tagged enum), `content` the body as
 *   lossy UTF-8, headers name → string;
 * - a body that is not a batch, or breaks a limit: `{"error": "<text>"}`;
 * - an item that cannot be sent (bad uri, bad header, a header the gateway sets) fails alone,
 *   with duration 0, as Octoplex's `RequestInvalid` does; the others run.
 *
 * Deliberate differences: every method Manifold sends is accepted (Octoplex: GET, POST, PUT,
 * DELETE); a failure's `error` starts with Manifold's item code (`CONNECT: …`); repeated
 * headers are joined with ", " (Octoplex emitted duplicate JSON keys, of which a client keeps
 * one) except `set-cookie`, whose values are joined with "\n" since a cookie may contain ", ".
 */
import { GatewayError } from '../../errors.ts';
import { FIELD_VALUE, GATEWAY_HEADERS, METHODS, targetUrl, TOKEN } from '../batch.ts';
import type { MultiplexOptions } from '../schema.ts';
import type { BatchItem, ItemResult, ResponseHeaders } from '../types.ts';
import type { BatchFormat, ParsedBatch } from './index.ts';

type Json = Record<string, unknown>;

const BATCH_FIELDS = ['timeout_msec', 'requests'];
const ITEM_FIELDS = ['method', 'uri', 'headers', 'body'];

function invalid(text: string): never {
  throw new GatewayError('INVALID_BODY', text);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a sequence';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  if (typeof v === 'number') return Number.isInteger(v) ? `integer \`${v}\`` : `floating point \`${v}\``;
  return `${typeof v} \`${String(v)}\``;
}

function struct(v: unknown, fields: readonly string[], what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    invalid(`invalid type: ${typeName(v)}, expected ${what}`);
  const names = fields.map((f) => `\`${f}\``);
  const expected = names.length === 2 ? names.join(' or ') : `one of ${names.join(', ')}`;
  for (const k of Object.keys(v)) {
    if (!fields.includes(k)) invalid(`unknown field \`${k}\`, expected ${expected} (${what})`);
  }
  return v as Json;
}

/** Octoplex prints durations with humantime: 3600000 → "1h", 10000 → "10s", 1500 → "1s 500ms". */
function humanTime(ms: number): string {
  const units: Array<[string, number]> = [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]];
  const parts: string[] = [];
  let left = ms;
  for (const [unit, size] of units) {
    const n = Math.floor(left / size);
    if (n > 0) parts.push(`${n}${unit}`);
    left -= n * size;
  }
  return parts.join(' ') || '0s';
}

/** An item that cannot be sent, or the item. */
function item(raw: unknown, i: number, timeoutMs: number): BatchItem | string {
  const r = struct(raw, ITEM_FIELDS, `struct SingleHttpRequest (requests[${i}])`);
  const method = r.method ?? 'GET';
  if (typeof method !== 'string' || !METHODS.includes(method)) {
    const variants = METHODS.map((m) => `\`${m}\``).join(', ');
    invalid(`unknown variant ${typeName(method)}, expected one of ${variants} (requests[${i}].method)`);
  }
  if (r.uri === undefined) invalid(`missing field \`uri\` (requests[${i}])`);
  if (typeof r.uri !== 'string')
    invalid(`invalid type: ${typeName(r.uri)}, expected a string (requests[${i}].uri)`);
  const headers: Array<readonly [string, string]> = [];
  if (r.headers != null) {
    if (typeof r.headers !== 'object' || Array.isArray(r.headers))
      invalid(`invalid type: ${typeName(r.headers)}, expected a map (requests[${i}].headers)`);
    for (const [name, value] of Object.entries(r.headers as Json)) {
      if (typeof value !== 'string')
        invalid(`invalid type: ${typeName(value)}, expected a string (requests[${i}].headers.${name})`);
      headers.push([name, value]);
    }
  }
  if (r.body != null && typeof r.body !== 'string')
    invalid(`invalid type: ${typeName(r.body)}, expected a string (requests[${i}].body)`);
  // The shape is right: what is left fails this item only.
  const url = targetUrl(r.uri);
  if (typeof url === 'string') return `invalid uri ${JSON.stringify(r.uri.slice(0, 200))}: ${url}`;
  for (const [name, value] of headers) {
    if (!TOKEN.test(name)) return `invalid HTTP header name ${JSON.stringify(name)}`;
    if (GATEWAY_HEADERS.has(name.toLowerCase()))
      return `header ${name} is set by the gateway, not by a request`;
    if (!FIELD_VALUE.test(value)) return `invalid HTTP header value for ${name}`;
  }
  return {
    method,
    url,
    headers,
    body: typeof r.body === 'string' ? Buffer.from(r.body, 'utf8') : null,
    timeoutMs,
    followRedirects: false,
  };
}

function parse(buf: Buffer, opts: MultiplexOptions): ParsedBatch {
  if (buf.length > opts.maxBodyBytes)
    throw new GatewayError('BODY_TOO_LARGE', `batch body is larger than ${opts.maxBodyBytes} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    invalid(`invalid JSON: ${(err as Error).message}`);
  }
  const root = struct(doc, BATCH_FIELDS, 'struct OctoplexRequest');
  if (root.timeout_msec === undefined) invalid('missing field `timeout_msec`');
  const timeout = root.timeout_msec;
  if (typeof timeout !== 'number' || !Number.isSafeInteger(timeout) || timeout < 0)
    invalid(`invalid type: ${typeName(timeout)}, expected u64 (timeout_msec)`);
  if (root.requests === undefined) invalid('missing field `requests`');
  if (!Array.isArray(root.requests))
    invalid(`invalid type: ${typeName(root.requests)}, expected a sequence (requests)`);
  const requests: unknown[] = root.requests;
  const items: BatchItem[] = [];
  const decided = new Map<number, ItemResult>();
  requests.forEach((raw, i) => {
    const it = item(raw, i, timeout);
    if (typeof it !== 'string') items.push(it);
    else decided.set(i, { error: { code: 'INVALID_REQUEST', message: it }, duration_msec: 0 });
  });
  // Octoplex validates after deserializing, in this order (multiplexer.rs validate_request).
  if (timeout > opts.maxTimeoutMs) invalid(`timeout may not be more than ${humanTime(opts.maxTimeoutMs)}`);
  if (requests.length === 0) invalid('there must be at least one request in the batch');
  if (requests.length > opts.maxRequests)
    invalid(`there may not be more than ${opts.maxRequests} requests in the batch`);
  return { batch: { timeoutMs: timeout, items, itemClock: true }, decided };
}

function flatHeaders(headers: ResponseHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    out[name] = typeof value === 'string' ? value : value.join(name === 'set-cookie' ? '\n' : ', ');
  }
  return out;
}

function outcome(r: ItemResult): unknown {
  if ('error' in r) {
    return { Failure: { error: `${r.error.code}: ${r.error.message}`, duration_msec: r.duration_msec } };
  }
  // Lossy UTF-8, as Octoplex's String::from_utf8_lossy: invalid sequences become U+FFFD.
  const content = r.body ?? Buffer.from(r.body_base64 ?? '', 'base64').toString('utf8');
  return {
    Success: { headers: flatHeaders(r.headers), status: r.status, content, duration_msec: r.duration_msec },
  };
}

export const octoplexFormat: BatchFormat = {
  parse,
  render: (responses) => JSON.stringify({ responses: responses.map(outcome) }),
  error: (err) => JSON.stringify({ error: err.message }),
};
