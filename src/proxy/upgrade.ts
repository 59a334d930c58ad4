/**
 * Upgrade (WebSocket) tunnelling, after the attempt: the upgrade request was spent through
 * the strategy runner and `forward` like any proxied request (issue 11: passive health,
 * attempt counting and connect retry included). On `101` the two sockets are piped both ways
 * (full duplex, with backpressure from `pipe`) and either side closing or failing closes the
 * other. A target that refuses the upgrade has its answer relayed as is, then the connection
 * is closed.
 */
import type { Duplex } from 'node:stream';
import type { AttemptError, AttemptResult, BodySink } from './forward.ts';
import { downstreamResponseHeaders } from './headers.ts';

/** Called once when the tunnel or the relayed answer is over, with the status and an error code. */
export type UpgradeDone = (status: number, error?: string) => void;

function headLines(status: number, reason: string, headers: readonly string[]): string {
  let out = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i < headers.length; i += 2) out += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${out}\r\n`;
}

/** The protocol the target switched to (its `Upgrade` header), else the one asked for. */
function upgradedTo(raw: ReadonlyArray<Buffer | string>, asked: string): string {
  for (let i = 0; i + 1 < raw.length; i += 2) if (String(raw[i]).toLowerCase() === 'upgrade') return String(raw[i + 1]);
  return asked;
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
): void {
  const upstream = result.upgraded;
  const status = result.status;
  if (upstream === undefined) {
    // The target answered without upgrading: relay that answer and close the connection.
    const headers = downstreamResponseHeaders(result.rawHeaders, requestId);
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
    upgradedTo(result.rawHeaders, protocol),
    ...downstreamResponseHeaders(result.rawHeaders, requestId),
  ];
  socket.write(headLines(status, 'Switching Protocols', out));
  if (head.length > 0) upstream.write(head);
  let closed = false;
  const close = (err?: Error) => {
    if (closed) return;
    closed = true;
    socket.destroy();
    upstream.destroy();
    onDone(status, err ? 'TUNNEL_ERROR' : undefined);
  };
  upstream.on('error', close);
  socket.on('error', close);
  upstream.on('close', () => close());
  socket.on('close', () => close());
  // A half-close from one side is passed on; the full close follows.
  upstream.pipe(socket);
  socket.pipe(upstream);
}
