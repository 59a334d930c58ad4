/**
 * The data-plane HTTP listener: node:http with the inbound limits from `limits` (header size,
 * slowloris timeouts) and parse errors answered as JSON. llhttp already refuses ambiguous
 * framing (Content-Length with Transfer-Encoding, conflicting lengths, bad chunking); those
 * surface here as client errors and are answered 400 without anything being forwarded.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from '../config/schema.ts';
import { parseDuration, parseSize } from '../lib/units.ts';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { Admission } from './admission.ts';
import type { Pipeline } from './pipeline.ts';
import { sendErrorOnSocket } from './respond.ts';

const FRAMING_ERRORS = new Set([
  'HPE_UNEXPECTED_CONTENT_LENGTH',
  'HPE_INVALID_CONTENT_LENGTH',
  'HPE_INVALID_TRANSFER_ENCODING',
  'HPE_INVALID_CHUNK_SIZE',
  'HPE_CHUNK_EXTENSIONS_OVERFLOW',
]);

export function clientErrorFor(err: NodeJS.ErrnoException): GatewayError | null {
  const code = err.code ?? '';
  if (code === 'ECONNRESET' || code === 'EPIPE') return null;
  if (code === 'HPE_HEADER_OVERFLOW') return new GatewayError('HEADERS_TOO_LARGE');
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT' || code === 'ERR_HTTP_HEADERS_TIMEOUT')
    return new GatewayError('REQUEST_TIMEOUT');
  if (FRAMING_ERRORS.has(code))
    return new GatewayError('AMBIGUOUS_FRAMING', `request framing is ambiguous or invalid (${code})`);
  return new GatewayError('BAD_REQUEST', `malformed request (${code || err.message})`);
}

/**
 * RFC 3986 §3.2.2 host with an optional port: an IP literal, or a reg-name (unreserved,
 * pct-encoded, sub-delims). A space or `@` (userinfo) in Host is refused, as is anything else.
 */
const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?$/;

/**
 * Why the request's Host cannot be served, or null (issue 15, item 4). RFC 9112 §3.2: a server
 * MUST answer 400 to an HTTP/1.1 request without Host, with more than one Host, or with an
 * invalid one. Node keeps only the first of duplicate Host lines in `req.headers`, so the raw
 * list is counted: a second Host must never reach undici, which refuses it, and the target.
 */
export function hostProblem(req: IncomingMessage): GatewayError | null {
  const host = req.headers.host;
  if (host === undefined) {
    return req.httpVersionMinor === 1 && req.httpVersionMajor === 1
      ? new GatewayError('BAD_REQUEST', 'HTTP/1.1 request without a Host header')
      : null;
  }
  const raw = req.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === 4 && name.toLowerCase() === 'host' && ++seen > 1)
      return new GatewayError('BAD_REQUEST', 'more than one Host header');
  }
  if (!HOST.test(host)) return new GatewayError('BAD_REQUEST', 'invalid Host header');
  return null;
}

export function createListener(config: Config, pipeline: Pipeline, log: Logger): Server {
  const l = config.limits;
  const headersTimeout = parseDuration(l.headers_timeout);
  const server = createServer(
    {
      maxHeaderSize: parseSize(l.max_header_bytes),
      headersTimeout,
      requestTimeout: parseDuration(l.request_timeout),
      keepAliveTimeout: parseDuration(l.keep_alive_timeout),
      // Node checks the two timeouts above only this often (30 s by default).
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 2))),
      // Checked in the pipeline instead, so the refusal gets the JSON error body.
      requireHostHeader: false,
      joinDuplicateHeaders: false,
    },
    new Admission(pipeline.handle, {
      maxInflightPerClient: l.max_inflight_per_client,
      writeIdleMs: parseDuration(l.write_idle_timeout),
      bodyIdleMs: parseDuration(l.body_idle_timeout),
    }).handle,
  );
  server.maxRequestsPerSocket = l.max_requests_per_socket;
  server.on('upgrade', pipeline.upgrade);
  // Issue 12: without a 'connect' listener node:http destroys the socket and the client gets
  // zero bytes. Manifold is a reverse proxy, not a forward one: CONNECT gets a JSON 405, closed.
  server.on('connect', (_req, socket: Socket) => {
    sendErrorOnSocket(
      socket,
      new GatewayError('METHOD_NOT_ALLOWED', 'CONNECT is not supported: Manifold is a reverse proxy'),
    );
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const e = clientErrorFor(err);
    if (e === null) {
      socket.destroy();
      return;
    }
    log.debug({ err: err.message, code: err.code, remote: socket.remoteAddress }, 'client error');
    sendErrorOnSocket(socket, e);
  });
  return server;
}
