/**
 * The data-plane HTTP listener: node:http with the inbound limits from `limits` (header size,
 * slowloris timeouts) and parse errors answered as JSON. llhttp already refuses ambiguous
 * framing (Content-Length with Transfer-Encoding, conflicting lengths, bad chunking); those
 * surface here as client errors and are answered 400 without anything being forwarded. What
 * llhttp lets through is refused here or in the pipeline: HTTP/0.9 and HTTP/2.0 request lines,
 * duplicate or invalid Host, expectations other than 100-continue (issue 15).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/schema.ts';
import { parseDuration, parseSize } from '../lib/units.ts';
import { GatewayError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { hasBody } from '../proxy/body.ts';
import { Admission } from './admission.ts';
import { requestIdOf } from './context.ts';
import type { Pipeline } from './pipeline.ts';
import { sendError, sendErrorOnSocket } from './respond.ts';
import { randomUuidPooled } from '../random.ts';

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

/**
 * Why the request cannot be served as it was framed, or null: its version (issue 15, item 13),
 * then its Host (item 4). llhttp accepts the HTTP/0.9 form (`GET /v`, no version, no headers)
 * and `HTTP/2.0` in a request line, and node:http hands both over like HTTP/1.1 requests.
 * Checked by the pipeline, for answers and upgrades alike, so refusals are access-logged.
 */
export function requestProblem(req: IncomingMessage): GatewayError | null {
  const major = req.httpVersionMajor;
  if (major === 1) return hostProblem(req);
  // A real HTTP/2 request (issue 14: node:http2's compat request has a stream), its
  // `:authority` already mapped to Host (http2.ts), which it may lack.
  if (major === 2 && (req as { stream?: unknown }).stream !== undefined) return hostProblem(req);
  return major === 0
    ? new GatewayError('BAD_REQUEST', `HTTP/${req.httpVersion} requests are not supported`)
    : new GatewayError('HTTP_VERSION_NOT_SUPPORTED', `HTTP/${req.httpVersion} is not spoken on this HTTP/1.1 listener`);
}

/**
 * Lingering close (issue 15, item 9): how long and how much of an unread request body is read
 * and discarded after an answer that closes the connection (a 413, a 417, a refusal under
 * `Expect`). Long enough for a client still sending to read its answer; bounded, so a refused
 * upload cannot keep the connection (or the CPU) busy.
 */
const LINGER_MS = 2000;
const LINGER_BYTES = 16 << 20;
const LINGER_TICK_MS = 100;

/**
 * node:http ends a closing answer with `socket.destroySoon()`, which destroys the socket once
 * the answer is flushed. A client still sending its body then gets a reset and, more often
 * than not, loses the answer it had not read yet (EPIPE). Instead, as nginx's lingering close:
 * the answer is followed by a FIN (half-close), what still arrives is read and discarded, and
 * the socket is destroyed when the client closes or after LINGER_MS / LINGER_BYTES.
 */
function lingerAfter(req: IncomingMessage, res: ServerResponse): void {
  // Taken now: a destroyed request no longer has it.
  const socket = req.socket;
  res.once('finish', () => {
    // node:http's own 'finish' handler ran first: a closing answer has ended the socket.
    if (req.complete || socket.destroyed || !socket.writableEnded) return;
    socket.removeListener('finish', socket.destroy);
    // node:http discards the rest of the body itself (an unread request is dumped, without
    // 'data' events): the socket's byte counter is what tells how much came.
    req.resume();
    const until = performance.now() + LINGER_MS;
    const limit = socket.bytesRead + LINGER_BYTES;
    const timer = setInterval(() => {
      if (performance.now() >= until || socket.bytesRead >= limit) socket.destroy();
    }, LINGER_TICK_MS).unref();
    socket.once('close', () => clearInterval(timer));
  });
}

/**
 * `Expect: 100-continue` (issue 15, item 8): `100 Continue` goes out when the body is first
 * read, which the pipeline does only after the route matched and the declared length passed
 * `max_body_bytes` (Go's net/http answers the same way). An answer given without the body (404,
 * 413, 429, a `respond` route) goes out alone, and node:http then closes the connection. A
 * client that did not wait (its body is already here) needs no 100.
 */
export function continueOnRead(req: IncomingMessage, res: ServerResponse): void {
  const read = req._read;
  req._read = (size: number) => {
    req._read = read;
    if (req.readableLength === 0 && !req.complete && !res.headersSent) res.writeContinue();
    read.call(req, size);
  };
}

/** The admission in front of the pipeline, one per worker, shared by every listener (issue 14). */
export function admissionFor(config: Config, pipeline: Pipeline): (req: IncomingMessage, res: ServerResponse) => void {
  const l = config.limits;
  return new Admission(pipeline.handle, {
    maxInflightPerClient: l.max_inflight_per_client,
    writeIdleMs: parseDuration(l.write_idle_timeout),
    bodyIdleMs: parseDuration(l.body_idle_timeout),
    onRefused: pipeline.refused,
  }).handle;
}

/** What a listener does to each request before anything reads it (issue 14: listeners.ts). */
export interface Entry {
  admit: (req: IncomingMessage, res: ServerResponse) => void;
  /** Tags the request with its listener; sets or strips the client-certificate subject header. */
  prepare: (req: IncomingMessage) => void;
}

/**
 * The HTTP/1.1 server of a listener. A plain listener binds it itself; a TLS or h2c one feeds
 * it the connections that speak HTTP/1.1 (listeners.ts).
 */
export function createListener(
  config: Config,
  pipeline: Pipeline,
  log: Logger,
  entry: Entry = { admit: admissionFor(config, pipeline), prepare: () => {} },
): Server {
  const l = config.limits;
  const headersTimeout = parseDuration(l.headers_timeout);
  const { admit, prepare } = entry;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    prepare(req);
    if (hasBody(req)) {
      // RFC 9112 §6.1: HTTP/1.0 with Transfer-Encoding has faulty framing; it is answered,
      // then the connection is closed.
      if (req.httpVersion === '1.0' && req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false;
      lingerAfter(req, res);
    }
    admit(req, res);
  };
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
    onRequest,
  );
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    continueOnRead(req, res);
    onRequest(req, res);
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    prepare(req);
    const startedAt = performance.now();
    if (hasBody(req)) lingerAfter(req, res);
    const err = new GatewayError('EXPECTATION_FAILED', 'only Expect: 100-continue is supported');
    const id = requestIdOf(req);
    const bytes = sendError(res, err, id, true);
    pipeline.refused(req, err, id, startedAt, null, bytes);
  });
  server.maxRequestsPerSocket = l.max_requests_per_socket;
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    prepare(req);
    pipeline.upgrade(req, socket, head);
  });
  // Tags CONNECT requests with their listener before the hook below sees them.
  server.prependListener('connect', prepare);
  // Issue 12: without a 'connect' listener node:http destroys the socket and the client gets
  // zero bytes. Issue 17: a connect route tunnels; no connect route taking it is a JSON 405.
  server.on('connect', pipeline.connect);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const e = clientErrorFor(err);
    if (e === null) {
      socket.destroy();
      return;
    }
    log.debug({ err: err.message, code: err.code, remote: socket.remoteAddress }, 'client error');
    const id = randomUuidPooled();
    const bytes = sendErrorOnSocket(socket, e, id);
    pipeline.refused(null, e, id, performance.now(), null, bytes);
  });
  return server;
}
