/**
 * Bytes on a downstream connection, attributed to the request (or tunnel) that moved them
 * (issue 17, item 4): read once when the request ends from the socket's own counters
 * (`bytesRead` / `bytesWritten`), never with a listener per chunk. Each call takes what moved
 * since the previous call on the same socket, so the requests of a keep-alive connection split
 * its bytes between them and their sum is the connection's total (a pipelined request's head
 * that arrived early counts with the request before it). Heads are included: these are the
 * bytes on the wire, as Layer7Router's counters count them.
 */
import type { Socket } from 'node:net';

/** What moved since the last call: `in` read from the downstream, `out` written to it. */
export interface WireBytes {
  in: number;
  out: number;
}

interface Mark extends WireBytes {
  read: number;
  written: number;
}

const marks = new WeakMap<object, Mark>();

/**
 * The bytes `socket` moved since the previous call (or since it opened). The returned object is
 * the socket's own, reused by the next call: read it at once.
 */
export function takeWireBytes(socket: Socket): WireBytes {
  const read = socket.bytesRead ?? 0;
  const written = socket.bytesWritten ?? 0;
  let m = marks.get(socket);
  if (m === undefined) {
    m = { read: 0, written: 0, in: 0, out: 0 };
    marks.set(socket, m);
  }
  m.in = read - m.read;
  m.out = written - m.written;
  m.read = read;
  m.written = written;
  return m;
}

/** The `listener` label of the one `listen` address (issue 17); `listeners[]` will name theirs. */
export const DEFAULT_LISTENER = 'default';

/** What counts connections (observability/metrics.ts `Metrics`). */
export interface ConnectionCounter {
  connectionOpened(listener: string): void;
  connectionClosed(listener: string, seconds: number): void;
}

/**
 * Counts a listener's downstream connections (accepted, open, closed, lifetime): one `close`
 * listener per connection, nothing per request. Works for any net.Server (TLS included: its
 * `connection` is the TCP accept).
 */
export function countConnections(
  server: { on(event: 'connection', cb: (socket: Socket) => void): unknown },
  counter: ConnectionCounter,
  listener: string = DEFAULT_LISTENER,
): void {
  server.on('connection', (socket: Socket) => {
    const opened = performance.now();
    counter.connectionOpened(listener);
    socket.once('close', () => counter.connectionClosed(listener, (performance.now() - opened) / 1000));
  });
}
