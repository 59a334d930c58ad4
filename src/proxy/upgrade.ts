/**
 * Upgrade (WebSocket) tunnelling, after the attempt: the upgrade request was spent through
 * the strategy runner and `forward` like any proxied request (issue 11: passive health,
 * attempt counting and connect retry included). On `101` the two sockets are piped both ways
 * (full duplex, with backpressure) and either side closing or failing closes the other. A
 * target that refuses the upgrade has its answer relayed as is, then the connection is closed.
 *
 * Issue 15: a tunnel with no byte either way for `routes[].tunnel_idle_timeout` is closed, and
 * at the end of `shutdown.grace` a WebSocket gets a close frame 1001 (Going Away) instead of a
 * cut (1006). The frame may only go between two of the target's frames, so the target→client
 * bytes are followed frame by frame (headers parsed, payloads skipped; see FrameBoundary): at
 * a boundary the frame goes at once; mid-frame, the rest of that frame is passed first. Waiting
 * for the direction to be idle would not do: a target may pause in the middle of a frame.
 */
import type { Duplex } from 'node:stream';
import { type AttemptError, type AttemptResult, type BodySink, upgradeField } from './forward.ts';
import { downstreamResponseHeaders } from './headers.ts';

/** Called once when the tunnel or the relayed answer is over, with the status and an error code. */
export type UpgradeDone = (status: number, error?: string) => void;

/** An open tunnel, as the pipeline tracks it for shutdown. */
export interface OpenTunnel {
  /** Ends the tunnel: a WebSocket with a close frame 1001 at a frame boundary, anything else cut. */
  goAway(): void;
}

export interface TunnelOptions {
  /** Our Via element (`forwarding.via`). */
  via: string;
  /** `routes[].tunnel_idle_timeout`; 0 = never. */
  idleTimeoutMs: number;
  /** Where the open tunnel is registered until it ends. */
  open: Set<OpenTunnel>;
}

/** A close frame, server to client (unmasked), status 1001 Going Away (RFC 6455 §5.5.1, §7.4.1). */
const GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9]);
/** How long the client has to answer our close frame before its connection is cut. */
const CLOSE_WAIT_MS = 1000;

/**
 * Follows WebSocket frame boundaries in one direction of a tunnel (RFC 6455 §5.2): parses
 * each frame header (even one split across chunks) and skips its payload, so that a control
 * frame can be put between two frames.
 */
export class FrameBoundary {
  /** Payload bytes left in the current frame. */
  #need = 0;
  /** A frame header split across chunks (at most 13 bytes). */
  #head: Buffer | null = null;

  get atBoundary(): boolean {
    return this.#need === 0 && this.#head === null;
  }

  /** Takes every byte of `chunk`. */
  feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const end = this.#step(chunk, at);
      if (end === -1) return;
      at = end;
    }
  }

  /** How many bytes of `chunk` finish the current frame (taking them); -1: all, and more. */
  untilBoundary(chunk: Buffer): number {
    return this.atBoundary ? 0 : this.#step(chunk, 0);
  }

  /** Consumes `chunk` from `at` up to the end of one frame: the offset past it, or -1. */
  #step(chunk: Buffer, at: number): number {
    if (this.#need > 0) {
      const n = Math.min(this.#need, chunk.length - at);
      this.#need -= n;
      return this.#need === 0 ? at + n : -1;
    }
    const prev = this.#head;
    const buf = prev === null ? chunk.subarray(at) : Buffer.concat([prev, chunk.subarray(at, at + 14)]);
    const len7 = buf.length >= 2 ? buf[1] & 0x7f : 0;
    const size = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (buf.length >= 2 && buf[1] & 0x80 ? 4 : 0);
    if (buf.length < size) {
      this.#head = prev === null ? Buffer.from(chunk.subarray(at)) : buf;
      return -1;
    }
    const payload = len7 === 126 ? buf.readUInt16BE(2) : len7 === 127 ? Number(buf.readBigUInt64BE(2)) : len7;
    this.#head = null;
    const next = at + size - (prev === null ? 0 : prev.length);
    if (payload === 0) return next;
    this.#need = payload;
    return next < chunk.length ? this.#step(chunk, next) : -1;
  }
}

function headLines(status: number, reason: string, headers: readonly string[]): string {
  let out = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i < headers.length; i += 2) out += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${out}\r\n`;
}

/** Streams a refused upgrade's answer body to the raw downstream socket. */
class SocketSink implements BodySink {
  readonly #socket: Duplex;
  readonly #done: () => void;
  readonly #failed: (err: AttemptError) => void;
  constructor(socket: Duplex, done: () => void, failed: (err: AttemptError) => void) {
    this.#socket = socket;
    this.#done = done;
    this.#failed = failed;
  }
  write(chunk: Buffer): boolean {
    return this.#socket.write(chunk);
  }
  end(): void {
    this.#socket.end();
    this.#done();
  }
  error(err: AttemptError): void {
    this.#socket.destroy();
    this.#failed(err);
  }
  onDrain(resume: () => void): void {
    this.#socket.on('drain', resume);
  }
}

/**
 * Answers the downstream `socket` from the winning attempt: tunnels an upgraded connection,
 * or relays the target's refusal.
 */
export function tunnel(
  result: AttemptResult,
  socket: Duplex,
  head: Buffer,
  protocol: string,
  requestId: string,
  onDone: UpgradeDone,
  options: TunnelOptions,
): void {
  const upstream = result.upgraded;
  const status = result.status;
  if (upstream === undefined) {
    // The target answered without upgrading: relay that answer and close the connection.
    const headers = downstreamResponseHeaders(result.headers, requestId, options.via);
    headers.push('connection', 'close');
    socket.write(headLines(status, '', headers));
    result.pipeTo(
      new SocketSink(
        socket,
        () => onDone(status),
        (err) => onDone(status, err.code),
      ),
    );
    return;
  }
  // The target's headers minus hop-by-hop ones (Via and x-request-id added), plus the upgrade pair.
  const out = [
    'connection',
    'Upgrade',
    'upgrade',
    upgradeField(result.headers) || protocol,
    ...downstreamResponseHeaders(result.headers, requestId, options.via),
  ];
  socket.write(headLines(status, 'Switching Protocols', out));
  if (head.length > 0) upstream.write(head);
  const frames = protocol.trim().toLowerCase() === 'websocket' ? new FrameBoundary() : null;
  let closed = false;
  let goingAway = false;
  const handle: OpenTunnel = { goAway };
  options.open.add(handle);
  const end = (error?: string) => {
    closed = true;
    options.open.delete(handle);
    onDone(status, error);
  };
  const close = (err?: Error) => {
    if (closed) return;
    socket.destroy();
    upstream.destroy();
    end(err ? 'TUNNEL_ERROR' : undefined);
  };
  const sendGoingAway = () => {
    if (closed) return;
    upstream.destroy();
    // end(): the frame leaves before the FIN; the client answers with its own close frame.
    socket.end(GOING_AWAY);
    const cut = setTimeout(() => socket.destroy(), CLOSE_WAIT_MS);
    cut.unref();
    socket.once('close', () => clearTimeout(cut));
    end();
  };
  function goAway(): void {
    if (closed || goingAway) return;
    if (frames === null) {
      close();
      return;
    }
    goingAway = true;
    if (frames.atBoundary) {
      sendGoingAway();
      return;
    }
    // Mid-frame: the rest of that frame first (the data handler), but not for ever.
    const cut = setTimeout(() => close(), CLOSE_WAIT_MS);
    cut.unref();
  }
  upstream.on('error', close);
  socket.on('error', close);
  upstream.on('close', () => close());
  socket.on('close', () => close());
  const idleMs = options.idleTimeoutMs;
  const downstream = socket as Duplex & { setTimeout?: (ms: number, cb?: () => void) => void };
  // Reads and writes of the downstream socket both reset it: no byte either way for idleMs.
  if (idleMs > 0 && typeof downstream.setTimeout === 'function') downstream.setTimeout(idleMs, () => close());
  // A half-close from one side is passed on; the full close follows.
  socket.pipe(upstream);
  if (frames === null) {
    upstream.pipe(socket);
    return;
  }
  upstream.on('data', (chunk: Buffer) => {
    if (closed) return;
    if (goingAway) {
      const boundary = frames.untilBoundary(chunk);
      if (boundary === -1) {
        socket.write(chunk);
        return;
      }
      if (boundary > 0) socket.write(chunk.subarray(0, boundary));
      sendGoingAway();
      return;
    }
    frames.feed(chunk);
    if (!socket.write(chunk)) upstream.pause();
  });
  socket.on('drain', () => upstream.resume());
  upstream.on('end', () => socket.end());
}
