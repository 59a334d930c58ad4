/**
 * The one renderer of error answers (STYLE.md §8): a JSON body `{"error":{"code","message"}}`
 * on a ServerResponse that has not started, or on a raw socket (client errors, refused
 * upgrades). A gRPC request (`content-type: application/grpc…`) gets the same error as a gRPC
 * status instead, which its client can read. After headers have gone out nothing can be said any more: the socket is destroyed.
 */
import type { ServerResponse } from 'node:http';
import { errorBody, type GatewayError, grpcStatusOf } from '../errors.ts';

/** The raw-socket half of the renderer lives beside the error catalog, for the layers below server/. */
export { sendErrorOnSocket } from '../errors.ts';

/**
 * An HTTP/2 answer (node:http2's compat response has a `stream`): connection-specific headers
 * such as `Connection: close` are forbidden there (RFC 9113 §8.2.2; node throws), and a
 * connection is closed with GOAWAY by the listener instead (issue 14).
 */
export function isHttp2(res: object): boolean {
  return (res as { stream?: unknown }).stream !== undefined;
}

/**
 * Ends an answer that has no body and no trailers with its head alone. On HTTP/2 the HEADERS
 * frame then carries END_STREAM, which a gRPC "trailers-only" answer needs: a gRPC client reads
 * `grpc-status` from the headers only when they end the stream (grpc-js reports "Call ended
 * without gRPC status" otherwise). node:http2's compat response sets END_STREAM only when
 * `end()` sends the head itself, not after `writeHead()`, hence the headers are set one by one.
 * HTTP/1.1 is written as before.
 */
export function endHeadOnly(res: ServerResponse, status: number, headers: readonly string[]): void {
  if (!isHttp2(res)) {
    res.writeHead(status, headers as string[]);
    res.end();
    return;
  }
  res.statusCode = status;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const had = res.getHeader(name);
    res.setHeader(name, had === undefined ? headers[i + 1]! : [...(Array.isArray(had) ? had : [String(had)]), headers[i + 1]!]);
  }
  res.end();
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
  if (isGrpc(res.req?.headers['content-type'])) return sendGrpcStatus(res, err, requestId, close);
  return sendJson(res, err.status, errorBody(err), requestId, close);
}

/** A gRPC call (`application/grpc`, `application/grpc+proto`, …; not grpc-web). */
export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.startsWith('application/grpc');
}

/**
 * A gRPC "trailers-only" answer: HTTP 200, `grpc-status` and `grpc-message` in the headers and
 * no body, as a gRPC server answers a call it refuses; the gateway's error code rides along in
 * `x-manifold-error`. Returns 0 (no body).
 */
function sendGrpcStatus(res: ServerResponse, err: GatewayError, requestId: string, close: boolean): number {
  const headers = [
    'content-type',
    'application/grpc',
    'grpc-status',
    String(grpcStatusOf(err)),
    'grpc-message',
    grpcMessage(`${err.code}: ${err.message}`),
    'x-manifold-error',
    err.code,
    'x-request-id',
    requestId,
  ];
  if (close && !isHttp2(res)) headers.push('connection', 'close');
  endHeadOnly(res, 200, headers);
  return 0;
}

/** gRPC's percent-encoding of `grpc-message`: bytes outside printable ASCII, and `%`. */
function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

