/**
 * Upgrade (WebSocket) tunnelling. The upgrade request goes through the target's undici
 * dispatcher; on `101` the two sockets are piped both ways (full duplex, with backpressure
 * from `pipe`) and either side closing or failing closes the other. A target that refuses
 * the upgrade has its answer relayed as is; a target that cannot be reached gets the usual
 * JSON error.
 */
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { GatewayError } from '../errors.ts';
import type { Target } from '../upstream/target.ts';
import { classify } from './forward.ts';
import { downstreamResponseHeaders, upgradeResponseHeaders } from './headers.ts';

export interface TunnelOptions {
  target: Target;
  method: string;
  path: string;
  protocol: string;
  headers: string[];
  /** The downstream socket and the bytes already read past its request head. */
  socket: Duplex;
  head: Buffer;
  requestId: string;
  timeoutMs: number;
  /** The request's one deadline (issue 11): aborts the upgrade while it has not been answered. */
  signal: AbortSignal;
  /**
   * Answers a failure on the downstream socket before the target answered: the caller's error
   * renderer (server/respond.ts), passed in so that proxy/ does not import server/ (issue 11).
   */
  refuse: (err: GatewayError) => void;
  onDone: (status: number, error?: string) => void;
}

function headLines(status: number, reason: string, headers: string[]): string {
  let out = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i < headers.length; i += 2) out += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${out}\r\n`;
}

class UpgradeHandler implements Dispatcher.DispatchHandler {
  readonly #o: TunnelOptions;
  #connected = false;
  #status = 0;
  #onAbort: (() => void) | null = null;
  constructor(o: TunnelOptions) {
    this.#o = o;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#connected = true;
    const signal = this.#o.signal;
    // The client gave up while we were connecting.
    if (signal.aborted) controller.abort(signal.reason as Error);
    else {
      this.#onAbort = () => controller.abort(signal.reason as Error);
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** Answered (upgraded, refused or failed): the deadline no longer concerns the upgrade. */
  #settled(): void {
    if (this.#onAbort !== null) this.#o.signal.removeEventListener('abort', this.#onAbort);
    this.#onAbort = null;
  }

  onRequestUpgrade(
    _c: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    upstream: Duplex,
  ): void {
    this.#settled();
    const { socket, head } = this.#o;
    this.#status = statusCode;
    const protocol = String(headers.upgrade ?? this.#o.protocol);
    const out = [
      'connection',
      'Upgrade',
      'upgrade',
      protocol,
      ...upgradeResponseHeaders(headers),
      'x-request-id',
      this.#o.requestId,
    ];
    socket.write(headLines(statusCode, 'Switching Protocols', out));
    if (head.length > 0) upstream.write(head);
    let closed = false;
    const close = (err?: Error) => {
      if (closed) return;
      closed = true;
      socket.destroy();
      upstream.destroy();
      this.#o.onDone(statusCode, err ? 'TUNNEL_ERROR' : undefined);
    };
    upstream.on('error', close);
    socket.on('error', close);
    upstream.on('close', () => close());
    socket.on('close', () => close());
    // A half-close from one side is passed on; the full close follows.
    upstream.pipe(socket);
    socket.pipe(upstream);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number): void {
    // The target answered without upgrading: relay that answer and close the connection.
    this.#status = statusCode;
    const raw = (controller.rawHeaders as Array<Buffer | string> | null) ?? [];
    const headers = downstreamResponseHeaders(raw, this.#o.requestId);
    headers.push('connection', 'close');
    this.#o.socket.write(headLines(statusCode, '', headers));
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#o.socket.write(chunk);
  }

  onResponseEnd(): void {
    this.#settled();
    this.#o.socket.end();
    this.#o.onDone(this.#status);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.#settled();
    const e = classify(this.#o.signal.aborted ? (this.#o.signal.reason ?? err) : err, this.#o.target, this.#connected, this.#status !== 0);
    if (this.#status === 0 && e.code !== 'CLIENT_CLOSED') this.#o.refuse(e);
    else this.#o.socket.destroy();
    this.#o.onDone(this.#status || e.status, e.code);
  }
}

export function tunnelUpgrade(o: TunnelOptions): void {
  o.target.dispatcher.dispatch(
    {
      origin: o.target.spec.origin,
      method: o.method as Dispatcher.HttpMethod,
      path: o.path,
      headers: o.headers,
      upgrade: o.protocol,
      headersTimeout: o.timeoutMs,
    },
    new UpgradeHandler(o),
  );
}
