/**
 * `forward`: ONE attempt to ONE target through that target's undici dispatcher, resolved at
 * response headers. The body is not read until a sink is attached, and then flows with
 * backpressure: a `false` from the sink pauses the upstream connection (undici
 * `DispatchController.pause()`), the sink's drain resumes it (STYLE.md §11). Concerns such as
 * timeouts, metrics or passive health wrap it as `ForwardWrapper`s instead of adding flags here.
 */
import type { Duplex, Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { AbortHook } from '../deadline.ts';
import { type ErrorCode, GatewayError } from '../errors.ts';
import type { Target } from '../upstream/target.ts';

export interface OutboundRequest {
  method: string;
  /** Path and query as sent to the target. */
  path: string;
  /** Flat [name, value, …] list. */
  headers: string[];
  body: Readable | AsyncIterable<Buffer> | Buffer | null;
  /** Time allowed until the target's response headers; 0 = none. */
  headersTimeoutMs: number;
  /** Longest pause between body chunks; 0 = none. */
  idleTimeoutMs: number;
  /**
   * An upgrade request (the `Upgrade` protocol, e.g. `websocket`): the attempt resolves with
   * the upgraded connection (`AttemptResult.upgraded`) on 101, or with an ordinary answer when
   * the target refuses (issue 11: upgrades spend their attempts like every other request).
   */
  upgrade?: string;
}

/**
 * Where an attempt failed, which decides whether it may be retried (STYLE.md §7). `request`:
 * undici refused to build the outbound request (issue 15, item 4); nothing was sent, no
 * target is to blame, and another target would refuse it the same way.
 */
export type Phase = 'request' | 'connect' | 'headers' | 'body';

/** An attempt that failed: the target, the phase and the catalog code that describes it. */
export class AttemptError extends GatewayError {
  readonly target: Target;
  readonly phase: Phase;
  constructor(code: ErrorCode, target: Target, phase: Phase, message: string, cause?: unknown) {
    super(code, message, { cause });
    this.target = target;
    this.phase = phase;
  }
}

/** Receives a response body. `write` returning false asks the sender to pause until `drained`. */
/** Trailer fields as undici parses them (gRPC's `grpc-status` and `grpc-message` travel here). */
export type Trailers = Record<string, string | string[] | undefined>;

export interface BodySink {
  write(chunk: Buffer): boolean;
  /** The body is complete; `trailers` are the target's trailer fields, when it sent any. */
  end(trailers?: Trailers | null): void;
  error(err: AttemptError): void;
  /** Registers the resume callback; the sink calls it when it can take more. */
  onDrain(resume: () => void): void;
  /**
   * Optional: the body's last chunk and its end at once, when the whole body arrived before
   * the sink was attached (a small answer): instead of write + end, so the sink can send it
   * in one go.
   */
  endWith?(chunk: Buffer, trailers: Trailers | null): void;
}

/**
 * A response's header fields as undici hands them to a dispatch handler: names lowercase,
 * values decoded once (latin1), a repeated field as an array. From an HTTP/2 target (issue 14
 * item 4, `http2: true`) node:http2's object, pseudo-headers (`:status`) included.
 */
export type ResponseHeaders = Record<string, string | string[] | undefined>;

export interface AttemptResult {
  target: Target;
  status: number;
  /**
   * The answer's header fields as undici parsed them (issue 11 item 4: decoded once, by undici,
   * not again from its raw buffers).
   */
  headers: ResponseHeaders;
  /** Starts the body flowing into the sink. Call exactly once, or `abort`. */
  pipeTo(sink: BodySink): void;
  /** Drops the response and its connection (a losing attempt, a client gone). */
  abort(reason: Error): void;
  /** The target's connection after a 101 to an upgrade request, for the caller to tunnel. */
  readonly upgraded?: Duplex;
}

export type Forward = (
  target: Target,
  request: OutboundRequest,
  signal: AbortHook,
) => Promise<AttemptResult>;
export type ForwardWrapper = (next: Forward) => Forward;

/**
 * Raised while undici builds the outbound request (its Request constructor checks headers,
 * path and method): the request's or the gateway's fault, never the target's.
 */
const BUILD_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'ERR_INVALID_ARG_TYPE', 'ERR_INVALID_CHAR']);

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

/** Maps an undici or socket error to the catalog, given whether the request reached a connection. */
export function classify(err: unknown, target: Target, connected: boolean, responded: boolean): AttemptError {
  if (err instanceof AttemptError) return err;
  if (err instanceof GatewayError)
    return new AttemptError(
      err.code,
      target,
      responded ? 'body' : connected ? 'headers' : 'connect',
      err.message,
      err,
    );
  const phase: Phase = responded ? 'body' : connected ? 'headers' : 'connect';
  // Defence in depth (issue 11): every deadline's reason is a GatewayError, but an abort reason
  // from elsewhere (a DOMException, whose `code` is a number) must not crash the process.
  if (err instanceof DOMException) {
    return err.name === 'TimeoutError'
      ? new AttemptError('TARGET_TIMEOUT', target, phase, `${target.id}: ${err.message}`, err)
      : new AttemptError('CLIENT_CLOSED', target, phase, `${target.id}: ${err.message}`, err);
  }
  const raw = (err as { code?: unknown } | null)?.code;
  const code = typeof raw === 'string' ? raw : '';
  const detail = `${target.id}: ${(err as Error | null)?.message || code}`;
  if (BUILD_CODES.has(code) && !connected)
    return new AttemptError(
      'REQUEST_NOT_FORWARDABLE',
      target,
      'request',
      `the request cannot be forwarded: ${(err as Error | null)?.message || code}`,
      err,
    );
  // Issue 14 item 4: a certificate the pool does not trust, or a failed handshake, says so
  // (and which keys fix it) instead of a bare "cannot reach". Still connect phase: nothing was
  // sent, so another target may be tried.
  if (!connected && isTlsFailure(code))
    return new AttemptError(
      'TARGET_UNREACHABLE',
      target,
      'connect',
      `TLS handshake with ${target.id} failed: ${tlsMessage(err, code)} (${code})${tlsHint(code)}`,
      err,
    );
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new AttemptError('TARGET_TIMEOUT', target, 'connect', `connect timeout to ${detail}`, err);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new AttemptError('TARGET_TIMEOUT', target, 'headers', `no response headers from ${detail}`, err);
    case 'UND_ERR_BODY_TIMEOUT':
      return new AttemptError('TARGET_TIMEOUT', target, 'body', `response body stalled from ${detail}`, err);
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return new AttemptError('TARGET_PROTOCOL', target, phase, `invalid response from ${detail}`, err);
    default:
      // undici's HTTPParserError often has no code (it looks its llhttp code up by number in a
      // map keyed by name): its name says it. An undici assertion on a live connection (a 101
      // without Upgrade trips one) is the answer's fault too (issue 15, item 12).
      if (connected && ((err as Error | null)?.name === 'HTTPParserError' || code === 'ERR_ASSERTION'))
        return new AttemptError('TARGET_PROTOCOL', target, phase, `invalid response from ${detail}`, err);
      // undici's HTTP/1 client drops the connection on a `100 Continue` it did not ask for (and
      // on an answer to no request) before any handler sees it: the target's fault, not a
      // failure to reach it (issue 15, item 12).
      if (connected && code === 'UND_ERR_SOCKET' && (err as Error).message === 'bad response')
        return new AttemptError(
          'TARGET_PROTOCOL',
          target,
          phase,
          `invalid response from ${target.id}: an unexpected 100 Continue (or an answer to no request)`,
          err,
        );
      if (CONNECT_CODES.has(code) || !connected) {
        return new AttemptError('TARGET_UNREACHABLE', target, phase, `cannot reach ${detail}`, err);
      }
      if (code.startsWith('HPE_')) {
        return new AttemptError('TARGET_PROTOCOL', target, phase, `invalid response from ${detail}`, err);
      }
      return new AttemptError('TARGET_UNREACHABLE', target, phase, `${detail}`, err);
  }
}

/**
 * OpenSSL's certificate verification codes (Node sets them as `err.code`) and Node's own TLS
 * and OpenSSL errors (`ERR_TLS_CERT_ALTNAME_INVALID`, `ERR_SSL_…`).
 */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE',
  'HOSTNAME_MISMATCH',
]);

/** Node's text without its advice to Node's own users (`--use-system-ca`), which is not ours to give. */
function tlsMessage(err: unknown, code: string): string {
  const m = (err as Error | null)?.message || code;
  // OpenSSL's own text ("…:SSL routines:ssl3_read_bytes:tlsv1 alert no application protocol:../deps/…"): its reason.
  const reason = /SSL routines:[^:]*:([^:]+):/.exec(m)?.[1];
  return reason ?? m.replace(/; if the root CA is installed locally.*$/s, '');
}

/** Which pool key fixes a failed handshake, where the code says. */
function tlsHint(code: string): string {
  if (TLS_VERIFY_CODES.has(code)) return "; a private CA goes in the pool's tls.ca";
  // The target offered no protocol the pool asked for in ALPN: it speaks only HTTP/2 there.
  if (code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') return "; the target speaks only HTTP/2: set the pool's http2: true";
  return '';
}

function isTlsFailure(code: string): boolean {
  return TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_');
}

/**
 * Issue 15, item 12: the only transfer coding a target may answer with is one `chunked`
 * (undici decodes it; the downstream side frames the body afresh). Anything else
 * (`chunked, gzip, chunked`, `gzip, chunked`, `xchunked`) undici relays as identity: the body
 * the client gets would be mis-framed or still encoded with nothing saying so. Refused with
 * 502 `TARGET_PROTOCOL`, as HAProxy does, and the connection is dropped.
 */
function badTransferCoding(te: unknown): string | null {
  if (te === undefined || te === 'chunked') return null;
  if (typeof te === 'string' && te.trim().toLowerCase() === 'chunked') return null;
  return Array.isArray(te) ? te.join(', ') : String(te);
}

/**
 * A 101 whose `Upgrade` names no protocol or another one than was asked for (RFC 9110 §7.8):
 * the bytes that follow are not the protocol the client expects. The error's text, or null.
 */
function badUpgrade(headers: ResponseHeaders, asked: string | undefined): string | null {
  const got = upgradeField(headers);
  if (got === '') return 'a 101 without Upgrade';
  if (asked === undefined) return null;
  return got.toLowerCase() === asked.trim().toLowerCase() ? null : `a 101 to "${got}", "${asked}" was asked for`;
}

/**
 * The protocol a 101 switched to: its Upgrade field, the last one where there are several (the
 * one checked above and the one the tunnel's 101 names downstream); '' when there is none.
 */
export function upgradeField(headers: ResponseHeaders): string {
  const upgrade = headers.upgrade;
  return (typeof upgrade === 'string' ? upgrade : (upgrade?.at(-1) ?? '')).trim();
}

/** Body bytes held per attempt before its consumer is attached (see onResponseData). */
const EARLY_LIMIT = 64 * 1024;

/** The dispatch handler of one attempt; also the AttemptResult it resolves with. */
class AttemptHandler implements Dispatcher.DispatchHandler, AttemptResult {
  readonly target: Target;
  status = 0;
  headers: ResponseHeaders = {};
  upgraded: Duplex | undefined = undefined;
  #resolve: (r: AttemptResult) => void;
  #reject: (e: AttemptError) => void;
  #controller: Dispatcher.DispatchController | null = null;
  #signal: AbortHook;
  #onAbort: (() => void) | null = null;
  #connected = false;
  #responded = false;
  #done = false;
  #sink: BodySink | null = null;
  /** Chunks that arrived before a sink was attached. */
  #early: Buffer[] | null = null;
  #earlyBytes = 0;
  #earlyEnd = false;
  #trailers: Trailers | null = null;
  #earlyError: AttemptError | null = null;
  /** The protocol an upgrade request asked for. */
  readonly #upgrade: string | undefined;

  constructor(
    target: Target,
    signal: AbortHook,
    resolve: (r: AttemptResult) => void,
    reject: (e: AttemptError) => void,
    upgrade?: string,
  ) {
    this.target = target;
    this.#upgrade = upgrade;
    this.#signal = signal;
    this.#resolve = resolve;
    this.#reject = reject;
    target.inflight++;
  }

  listen(): void {
    this.#onAbort = () => this.abort(this.#signal.reason as Error);
    this.#signal.addEventListener('abort', this.#onAbort, { once: true });
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.target.inflight--;
    if (this.#onAbort) this.#signal.removeEventListener('abort', this.#onAbort);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    this.#connected = true;
    if (this.#signal.aborted) controller.abort(this.#signal.reason as Error);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: ResponseHeaders,
  ): void {
    if (statusCode < 200) return; // 1xx informational: not forwarded
    const te = badTransferCoding(headers['transfer-encoding']);
    // Thrown: undici aborts the request (onResponseError) and drops the connection.
    if (te !== null)
      throw new AttemptError(
        'TARGET_PROTOCOL',
        this.target,
        'headers',
        `invalid response from ${this.target.id}: Transfer-Encoding "${te}" (only chunked is accepted)`,
      );
    this.#responded = true;
    this.status = statusCode;
    this.headers = headers;
    this.#resolve(this);
  }

  /** 101 to an upgrade request: the attempt is over and its connection the caller's to tunnel. */
  onRequestUpgrade(_c: Dispatcher.DispatchController, statusCode: number, headers: ResponseHeaders, socket: Duplex): void {
    const bad = badUpgrade(headers, this.#upgrade);
    if (bad !== null) {
      // Issue 15: never relayed; a 502 counted against the target, like any invalid answer.
      socket.destroy();
      this.#finish();
      this.#reject(new AttemptError('TARGET_PROTOCOL', this.target, 'headers', `invalid response from ${this.target.id}: ${bad}`));
      return;
    }
    this.#finish();
    this.#responded = true;
    this.status = statusCode;
    this.headers = headers;
    this.upgraded = socket;
    this.#resolve(this);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const sink = this.#sink;
    if (sink !== null) {
      if (!sink.write(chunk)) controller.pause();
      return;
    }
    // The body often arrives in the same read as the headers, before the strategy has
    // handed the result to its consumer. Pausing undici's parser for that costs a re-parse
    // per response, so a little is held here and the parser is paused only past the limit.
    (this.#early ??= []).push(chunk);
    this.#earlyBytes += chunk.length;
    if (this.#earlyBytes >= EARLY_LIMIT) controller.pause();
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Trailers | null): void {
    this.#finish();
    // undici passes {} when there were none: only real trailers are handed on.
    const t = trailers !== null && trailers !== undefined && hasKeys(trailers) ? trailers : null;
    if (this.#sink !== null) this.#sink.end(t);
    else {
      this.#earlyEnd = true;
      this.#trailers = t;
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#finish();
    const e = classify(
      this.#signal.aborted ? (this.#signal.reason ?? err) : err,
      this.target,
      this.#connected,
      this.#responded,
    );
    if (!this.#responded) this.#reject(e);
    else if (this.#sink !== null) this.#sink.error(e);
    else this.#earlyError = e;
  }

  pipeTo(sink: BodySink): void {
    this.#sink = sink;
    const early = this.#early;
    this.#early = null;
    // A small answer is usually whole by now, ended: its last chunk goes out with the end, and
    // the sink never needs the resume callback (nothing is left to resume).
    if (early !== null && this.#earlyEnd && this.#earlyError === null && sink.endWith !== undefined) {
      const last = early.length - 1;
      for (let i = 0; i < last; i++) sink.write(early[i]!);
      sink.endWith(early[last]!, this.#trailers);
      return;
    }
    sink.onDrain(() => this.#controller?.resume());
    let open = true;
    if (early !== null) for (const chunk of early) open = sink.write(chunk);
    if (this.#earlyError !== null) sink.error(this.#earlyError);
    else if (this.#earlyEnd) sink.end(this.#trailers);
    else if (open) this.#controller?.resume(); // otherwise the sink's drain resumes
  }

  abort(reason: Error): void {
    if (this.#done) {
      this.upgraded?.destroy(reason);
      return;
    }
    if (this.#controller !== null) {
      this.#controller.abort(reason);
      return;
    }
    // Still queued for a connection: settle now so the caller never waits for a connect it no
    // longer wants; onRequestStart aborts the request when undici hands it a socket.
    this.#finish();
    this.#reject(classify(reason, this.target, false, false));
  }
}

function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

/** The base Forward: dispatches through the target's pooled undici dispatcher. */
export const forward: Forward = (target, request, signal) =>
  new Promise<AttemptResult>((resolve, reject) => {
    if (signal.aborted) {
      reject(classify(signal.reason, target, false, false));
      return;
    }
    const handler = new AttemptHandler(target, signal, resolve, reject, request.upgrade);
    handler.listen();
    try {
      target.dispatcher.dispatch(
        {
          origin: target.spec.origin,
          method: request.method as Dispatcher.HttpMethod,
          path: request.path,
          headers: request.headers,
          body: request.body as Dispatcher.DispatchOptions['body'], // undici also streams async iterables
          headersTimeout: request.headersTimeoutMs,
          bodyTimeout: request.idleTimeoutMs,
          upgrade: request.upgrade,
          // One value per target: undici otherwise takes the Host header's name, and drops an
          // https target's connection (waiting for its requests first) whenever that changes
          // (`host: preserve`, many client hosts). The name actually sent and checked is the
          // connector's choice (upstream/connector.ts), never this one.
          servername: target.spec.host,
          // Sending the body must not wait behind another request on a pipelined socket.
          blocking: true,
        } as Dispatcher.DispatchOptions, // `servername` is read by undici's Request, absent from its types
        handler,
      );
    } catch (err) {
      handler.onResponseError(null as unknown as Dispatcher.DispatchController, err as Error);
    }
  });
