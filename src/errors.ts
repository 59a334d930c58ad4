/**
 * The one catalog of coded errors. Every error a client can see is listed here with its
 * HTTP status and message; code throws or returns a GatewayError and only the pipeline's
 * renderer turns it into `{"error":{"code","message"}}` (see DESIGN.md, STYLE.md §8).
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

export const ERRORS = Object.freeze({
  ROUTE_NOT_FOUND: { status: 404, message: 'no route matches this request' },
  BAD_REQUEST: { status: 400, message: 'malformed request' },
  AMBIGUOUS_FRAMING: { status: 400, message: 'request framing is ambiguous' },
  // undici refused to build the outbound request from it (issue 15): never the target's fault.
  REQUEST_NOT_FORWARDABLE: { status: 400, message: 'the request cannot be forwarded' },
  // Issue 15: an `Expect` other than 100-continue (RFC 9110 §10.1.1).
  EXPECTATION_FAILED: { status: 417, message: 'this expectation cannot be met' },
  // Issue 15: HTTP/2.0 in the request line of the HTTP/1.1 listener (llhttp refuses other versions).
  HTTP_VERSION_NOT_SUPPORTED: { status: 505, message: 'this HTTP version is not supported' },
  HEADERS_TOO_LARGE: { status: 431, message: 'request headers are too large' },
  BODY_TOO_LARGE: { status: 413, message: 'request body is too large' },
  REQUEST_TIMEOUT: { status: 408, message: 'request was not received in time' },
  // Issue 15: limits.max_inflight_per_client.
  CLIENT_LIMIT: { status: 429, message: 'this client has too many requests in flight' },
  // Issue 17: a `connect` route with `auth` and no valid Proxy-Authorization (Basic).
  PROXY_AUTH_REQUIRED: { status: 407, message: 'proxy authentication required' },
  // Issue 17: a CONNECT destination outside the route's allow list or ports (nothing was dialed).
  DESTINATION_FORBIDDEN: { status: 403, message: 'this destination is not allowed' },
  CLIENT_CLOSED: { status: 499, message: 'client closed the request' },
  TARGET_UNREACHABLE: { status: 502, message: 'target could not be reached' },
  TARGET_PROTOCOL: { status: 502, message: 'target sent an invalid response' },
  TARGET_TIMEOUT: { status: 504, message: 'target did not answer in time' },
  // Why a losing attempt (fanout, hedge) was aborted: logged per attempt, never sent to a client.
  ATTEMPT_CANCELLED: { status: 502, message: 'another attempt answered first' },
  // Issue 15: the request already carries forwarding.loop_limit of our own Via entries.
  LOOP_DETECTED: { status: 508, message: 'the request has already passed this gateway: a forwarding loop' },
  NO_TARGET_AVAILABLE: { status: 503, message: 'no target is available' },
  SHUTTING_DOWN: { status: 503, message: 'gateway is shutting down' },
  QUEUE_UNAVAILABLE: { status: 503, message: 'the queue could not store the request' },
  // GET /ready (issue 15): the gateway should not get new traffic now (draining, queue away).
  NOT_READY: { status: 503, message: 'the gateway is not ready for traffic' },
  INTERNAL: { status: 500, message: 'internal gateway error' },
  // Admin API
  UNAUTHORIZED: { status: 401, message: 'missing or invalid bearer token' },
  // A dashboard session (cookie) changing something without the page's own header: CSRF guard.
  FORBIDDEN: { status: 403, message: 'this request is not allowed' },
  // Issue 15: a Host that is not the admin address (DNS rebinding) / a change from another site.
  FORBIDDEN_HOST: { status: 403, message: 'this Host is not an address of the admin API' },
  FORBIDDEN_ORIGIN: { status: 403, message: 'changes from another origin are refused' },
  NOT_FOUND: { status: 404, message: 'not found' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed' },
  INVALID_BODY: { status: 400, message: 'invalid request body' },
  CONFLICT: { status: 409, message: 'conflict' },
  // Issue 16: `cluster.store` is configured and PostgreSQL cannot be reached; nothing changed.
  CLUSTER_UNAVAILABLE: {
    status: 503,
    message: 'the cluster store (PostgreSQL) is unreachable; admin changes are refused until it returns',
  },
  CONFIG_INVALID: { status: 422, message: 'the configuration is invalid; the old one keeps serving' },
} as const);

export type ErrorCode = keyof typeof ERRORS;

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra JSON-safe detail rendered next to code and message (e.g. the list of attempts). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(
      message ?? ERRORS[code].message,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.details = options?.details;
  }
}

export function isGatewayError(err: unknown): err is GatewayError {
  return err instanceof GatewayError;
}

/** The one JSON shape of an error body. */
export function errorBody(err: GatewayError): string {
  return JSON.stringify({ error: { code: err.code, message: err.message, ...err.details } });
}

/**
 * The gRPC status of a gateway error, for answers to `application/grpc` requests (issue 14):
 * gRPC's own HTTP-to-status mapping (doc/http-grpc-status-mapping.md) for the status, with the
 * cases it cannot tell apart named exactly (a deadline, a limit, a client gone).
 */
export function grpcStatusOf(err: GatewayError): number {
  switch (err.code) {
    case 'TARGET_TIMEOUT':
    case 'REQUEST_TIMEOUT':
      return 4; // DEADLINE_EXCEEDED
    case 'BODY_TOO_LARGE':
    case 'HEADERS_TOO_LARGE':
    case 'CLIENT_LIMIT':
      return 8; // RESOURCE_EXHAUSTED
    case 'CLIENT_CLOSED':
      return 1; // CANCELLED
    case 'INTERNAL':
      return 13; // INTERNAL
  }
  switch (err.status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/**
 * For sockets outside a ServerResponse (parse errors, upgrades, CONNECT). Closes the connection.
 * `extra`: header name/value pairs (a 407's `Proxy-Authenticate`, issue 17). Returns the bytes
 * of body written (the access log's `bytes`, as for every answer).
 */
export function sendErrorOnSocket(
  socket: Duplex,
  err: GatewayError,
  requestId?: string,
  extra: readonly string[] = [],
): number {
  if (!socket.writable) {
    socket.destroy();
    return 0;
  }
  const body = errorBody(err);
  let more = '';
  for (let i = 0; i + 1 < extra.length; i += 2) more += `${extra[i]}: ${extra[i + 1]}\r\n`;
  const answer =
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n` +
    'content-type: application/json\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    (requestId ? `x-request-id: ${requestId}\r\n` : '') +
    more +
    'connection: close\r\n\r\n' +
    body;
  socket.end(answer);
  return Buffer.byteLength(body);
}
