/**
 * Upgrade (WebSocket) tunnelling. The upgrade request goes through the target's undici
 * dispatcher; on `101` the two sockets are piped both ways (full duplex, with backpressure
 * from `pipe`) and either side closing or failing closes the other. A target that refuses
 * the upgrade has its answer relayed as is; a target that cannot be reached gets the usual
 * JSON error.
 */
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { GatewayError } from '../errors.ts';
import { sendErrorOnSocket } from '../server/respond.ts';
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
  constructor(o: TunnelOptions) {
    this.#o = o;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#connected = true;
    // The client gave up while we were connecting.
    if (this.#o.socket.destroyed) controller.abort(new GatewayError('CLIENT_CLOSED'));
    else this.#o.socket.once('close', () => controller.abort(new GatewayError('CLIENT_CLOSED')));
  }

  onRequestUpgrade(
    _c: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    upstream: Duplex,
  ): void {
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
    this.#o.socket.end();
    this.#o.onDone(this.#status);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    const e = classify(err, this.#o.target, this.#connected, this.#status !== 0);
    if (this.#status === 0 && e.code !== 'CLIENT_CLOSED')
      sendErrorOnSocket(this.#o.socket, e, this.#o.requestId);
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
