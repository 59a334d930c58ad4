/**
 * HTTP/2 inbound (issue 14, item 3): node:http2's compat API (Http2ServerRequest/Response)
 * runs the same admission and pipeline as HTTP/1.1. What differs is made to look the same
 * here, once per request: pseudo-headers become a `RequestContext`-ready head (`:authority` →
 * Host, split `cookie` fields joined, RFC 9113 §8.2.3; no `:path` or `:scheme` in
 * `rawHeaders`, so none reaches a target), and the limits HTTP/1.1 has are given their HTTP/2
 * form: streams per connection, header list size, an idle connection's keep-alive, the time
 * to the first request and to a whole request. A drain sends GOAWAY (HTTP/2 has no
 * `Connection: close`). WebSocket stays on HTTP/1.1 (no RFC 8441 extended CONNECT).
 */
import {
  createServer,
  type Http2Server,
  type Http2ServerRequest,
  Http2ServerResponse,
  type ServerHttp2Session,
} from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config/schema.ts';
import { GatewayError } from '../errors.ts';
import { parseDuration, parseSize } from '../lib/units.ts';
import type { Logger } from '../observability/logger.ts';
import { requestIdOf } from './context.ts';
import { continueOnRead, type Entry } from './listener.ts';
import { sendError } from './respond.ts';
import type { Pipeline } from './pipeline.ts';

// The compat response has no `destroyed`; the pipeline asks it whether the client is gone
// (issue 14). The stream's answer is the truth; a response whose stream is gone is destroyed.
if (!('destroyed' in Http2ServerResponse.prototype)) {
  Object.defineProperty(Http2ServerResponse.prototype, 'destroyed', {
    get(this: Http2ServerResponse): boolean {
      const stream = this.stream as Http2ServerResponse['stream'] | undefined;
      return stream === undefined || stream.destroyed;
    },
  });
}

/**
 * The request head as HTTP/1.1 has it: `rawHeaders` without pseudo-headers, Host from
 * `:authority` (RFC 9113 §8.3.1: it replaces Host), cookies in one field.
 */
export function normalizeHead(req: Http2ServerRequest): void {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let authority: string | undefined;
  let host: string | undefined;
  let cookie: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.charCodeAt(0) === 58) {
      if (name === ':authority') authority = raw[i + 1];
      continue;
    }
    if (name === 'host') host ??= raw[i + 1];
    else if (name === 'cookie') cookie = cookie === undefined ? raw[i + 1] : `${cookie}; ${raw[i + 1]}`;
    else out.push(name, raw[i + 1]);
  }
  const h = authority ?? host;
  if (h !== undefined) {
    out.unshift('host', h);
    req.headers.host = h;
  }
  if (cookie !== undefined) out.push('cookie', cookie);
  Object.defineProperty(req, 'rawHeaders', { value: out, writable: true, configurable: true });
}

export interface Http2Side {
  server: Http2Server;
  /** Open sessions, for the drain (GOAWAY) and the end of the grace (destroy). */
  sessions: Set<ServerHttp2Session>;
}

export function createHttp2(config: Config, entry: Entry, log: Logger, pipeline: Pick<Pipeline, 'connectOverHttp2'>): Http2Side {
  const l = config.limits;
  const keepAliveMs = parseDuration(l.keep_alive_timeout);
  const headersMs = parseDuration(l.headers_timeout);
  const requestMs = parseDuration(l.request_timeout);
  const sessions = new Set<ServerHttp2Session>();
  const onRequest = (req: Http2ServerRequest, res: Http2ServerResponse): void => {
    normalizeHead(req);
    const r = req as unknown as IncomingMessage;
    const w = res as unknown as ServerResponse;
    entry.prepare(r);
    if (requestMs > 0 && !req.stream.endAfterHeaders) wholeRequestWithin(req, res, requestMs);
    entry.admit(r, w);
  };
  const server = createServer(
    {
      settings: {
        maxConcurrentStreams: l.http2_max_concurrent_streams,
        maxHeaderListSize: parseSize(l.http2_max_header_list_size),
      },
      // node's default is 128 header fields; HTTP/1.1 takes up to 2000 (node:http's
      // maxHeadersCount). The size limit above is the real bound.
      maxHeaderListPairs: 1000,
    },
    onRequest,
  );
  server.on('checkContinue', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    continueOnRead(req as unknown as IncomingMessage, res as unknown as ServerResponse);
    onRequest(req, res);
  });
  server.on('connect', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    entry.prepare(req as unknown as IncomingMessage);
    pipeline.connectOverHttp2(req as unknown as IncomingMessage, res as unknown as ServerResponse);
  });
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    idleClose(session, keepAliveMs, headersMs);
    session.on('close', () => sessions.delete(session));
    session.on('error', (err) => log.debug({ err: err.message }, 'http2 session error'));
  });
  server.on('sessionError', (err: Error) => log.debug({ err: err.message }, 'http2 session error'));
  return { server, sessions };
}

/**
 * `limits.keep_alive_timeout` on HTTP/2: a connection with no open stream for that long is
 * closed (GOAWAY), as an idle HTTP/1.1 keep-alive connection is; the first stream must come
 * within `limits.headers_timeout`. One timer per connection, armed only while it is idle.
 */
function idleClose(session: ServerHttp2Session, keepAliveMs: number, firstMs: number): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number) => {
    if (ms > 0) timer = setTimeout(() => session.close(), ms).unref();
  };
  arm(firstMs);
  session.on('stream', (stream) => {
    clearTimeout(timer);
    open++;
    stream.once('close', () => {
      if (--open === 0 && !session.closed) arm(keepAliveMs);
    });
  });
  session.once('close', () => clearTimeout(timer));
}

/** `limits.request_timeout` on HTTP/2: the whole request body within it, else 408 (or a reset). */
function wholeRequestWithin(req: Http2ServerRequest, res: Http2ServerResponse, ms: number): void {
  const timer = setTimeout(() => {
    if (req.complete) return;
    const err = new GatewayError('REQUEST_TIMEOUT', `the request was not received within ${ms} ms (limits.request_timeout)`);
    if (res.headersSent) req.stream.close();
    else sendError(res as unknown as ServerResponse, err, requestIdOf(req as unknown as IncomingMessage));
  }, ms).unref();
  req.once('end', () => clearTimeout(timer));
  res.once('close', () => clearTimeout(timer));
}
