/**
 * The one renderer of error answers (STYLE.md §8): a JSON body `{"error":{"code","message"}}`
 * on a ServerResponse that has not started, or on a raw socket (client errors, refused
 * upgrades). After headers have gone out nothing can be said any more: the socket is destroyed.
 */
import type { ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { errorBody, type GatewayError } from '../errors.ts';

/**
 * An HTTP/2 answer (node:http2's compat response has a `stream`): connection-specific headers
 * such as `Connection: close` are forbidden there (RFC 9113 §8.2.2; node throws), and a
 * connection is closed with GOAWAY by the listener instead (issue 14).
 */
export function isHttp2(res: object): boolean {
  return (res as { stream?: unknown }).stream !== undefined;
}

/** A whole JSON answer with its length, request id and any `extra` headers; returns its size. */
export function sendJson(
  res: ServerResponse,
  status: number,
  json: string | Buffer,
  requestId: string,
  close: boolean,
  extra: readonly string[] = [],
): number {
  const body = typeof json === 'string' ? Buffer.from(json) : json;
  const headers = ['content-type', 'application/json', 'content-length', String(body.length), ...extra];
  headers.push('x-request-id', requestId);
  if (close && !isHttp2(res)) headers.push('connection', 'close');
  res.writeHead(status, headers);
  res.end(body);
  return body.length;
}

/**
 * A whole answer from config: a route's `exhausted` answer, or a `defer` route's `body: empty`
 * (asyncproxy's answer). `text/plain` unless empty; 204 and 304 carry no Content-Length (RFC
 * 9110 §8.6). Returns the bytes of body sent.
 */
export function sendStatic(
  res: ServerResponse,
  status: number,
  body: Buffer,
  requestId: string,
  close: boolean,
  extra: readonly string[] = [],
): number {
  const headers = status === 204 || status === 304 ? [...extra] : ['content-length', String(body.length), ...extra];
  if (body.length > 0) headers.push('content-type', 'text/plain; charset=utf-8');
  headers.push('x-request-id', requestId);
  if (close && !isHttp2(res)) headers.push('connection', 'close');
  res.writeHead(status, headers);
  res.end(body);
  return body.length;
}

/** Returns the bytes of body sent (the access log's `bytes`): 0 once headers had gone out. */
export function sendError(res: ServerResponse, err: GatewayError, requestId: string, close = false): number {
  if (res.headersSent) {
    res.destroy(err);
    return 0;
  }
  return sendJson(res, err.status, errorBody(err), requestId, close);
}

/** For sockets outside a ServerResponse (parse errors, upgrades). Closes the connection. */
export function sendErrorOnSocket(socket: Duplex, err: GatewayError, requestId?: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = errorBody(err);
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n` +
      'content-type: application/json\r\n' +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      (requestId ? `x-request-id: ${requestId}\r\n` : '') +
      'connection: close\r\n\r\n' +
      body,
  );
}
