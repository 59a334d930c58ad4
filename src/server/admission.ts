/**
 * Downstream admission (issue 15, item 1): what keeps one client from holding a target's
 * connections. Sits between the listener and the pipeline, per worker:
 *
 * - **One request in flight per connection.** node:http dispatches pipelined requests as it
 *   parses them, before the previous answer is written: one connection carrying 130 pipelined
 *   GETs it never reads held 130 upstream connections. A later request on a connection now
 *   waits until the answer before it has finished; with many waiting the connection is no
 *   longer read, and more than `MAX_PIPELINED` waiting closes it.
 * - **`limits.max_inflight_per_client`**: requests in flight per client address (the TCP peer;
 *   behind a load balancer that is the balancer — raise it or set null there). Beyond it:
 *   429 `CLIENT_LIMIT`.
 * - **`limits.write_idle_timeout`**: an answer whose bytes stop leaving (the client stopped
 *   reading) is cut after it; its attempt is aborted and its upstream connection freed.
 * - **`limits.body_idle_timeout`**: a request body that stops arriving (while Manifold is
 *   ready to read it) is cut after it: 408 `REQUEST_TIMEOUT` when nothing was answered yet.
 *
 * Idleness is checked by one coarse timer over the requests in flight (no timer per request),
 * from the socket's own byte counters: a slow client that still makes progress is never cut.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { GatewayError } from '../errors.ts';
import { clientAddress } from '../lib/address.ts';
import { requestIdOf } from './context.ts';
import { sendError } from './respond.ts';

/**
 * The next step (the pipeline). `admitted` is admission's own end of the request: the next step
 * calls it once the answer closed, from its own 'close' listener, so that a request has one
 * such listener, not two (issue 11 item 4: no listener array made and copied per request).
 */
type Handler = (req: IncomingMessage, res: ServerResponse, admitted: () => void) => void;

export interface AdmissionLimits {
  /** Requests in flight per client address; null = no cap. */
  maxInflightPerClient: number | null;
  /** ms; 0 = never cut a stalled answer. */
  writeIdleMs: number;
  /** ms; 0 = never cut a stalled request body. */
  bodyIdleMs: number;
  /** Told of each request refused here (the pipeline's access log and metrics). */
  onRefused?: (
    req: IncomingMessage,
    err: GatewayError,
    requestId: string,
    startedAt: number,
    route: string | null,
    bytes: number | null,
  ) => void;
}

/**
 * Pipelined requests waiting on one connection: past PAUSE_AT the connection is no longer read
 * (what one read already held is kept), past MAX_PIPELINED it is closed.
 */
const PAUSE_AT = 64;
export const MAX_PIPELINED = 1024;

interface Connection {
  busy: boolean;
  waiting: Array<[IncomingMessage, ServerResponse]>;
}

interface Watch {
  req: IncomingMessage;
  res: ServerResponse;
  socket: Socket;
  /** Bytes read from / flushed to the socket at the last check, and when they last moved. */
  read: number;
  readAt: number;
  flushed: number;
  flushedAt: number;
  /** Neighbours in the list of watched requests; null at either end, and once out of it. */
  prev: Watch | null;
  next: Watch | null;
  /** In the list (unlinking twice is a no-op). */
  listed: boolean;
}

export class Admission {
  readonly #next: Handler;
  readonly #limits: AdmissionLimits;
  readonly #connections = new WeakMap<Socket, Connection>();
  readonly #perClient = new Map<string, number>();
  /**
   * The requests in flight being watched, as a list through the Watch objects themselves. Not a
   * Set (issue 11 item 4): a Set churned by one add and one delete per request is rehashed
   * every so often, and a table it leaves behind still points at the requests it held until a
   * full collection; every young request object it reaches survives the scavenges meanwhile. That
   * promoted about 10 MB per scavenge under load and made each scavenge 10-25 ms instead of ~1.
   */
  #head: Watch | null = null;
  readonly #tickMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(next: Handler, limits: AdmissionLimits) {
    this.#next = next;
    this.#limits = limits;
    const shortest = Math.min(...[limits.writeIdleMs, limits.bodyIdleMs].filter((ms) => ms > 0), 4000);
    this.#tickMs = Math.max(50, Math.min(1000, Math.floor(shortest / 4)));
  }

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    // HTTP/2 streams are not pipelined: each runs at once (the stream limit bounds them). Its
    // `req.socket` is a proxy of its own per stream: keying a table by it would add an entry per
    // request, the churn that keeps finished requests reachable across scavenges.
    if (req.httpVersionMajor === 2) {
      this.#run(null, req, res);
      return;
    }
    const socket = req.socket;
    let conn = this.#connections.get(socket);
    if (conn === undefined) this.#connections.set(socket, (conn = { busy: false, waiting: [] }));
    if (conn.busy) {
      if (conn.waiting.length >= MAX_PIPELINED) {
        socket.destroy();
        return;
      }
      conn.waiting.push([req, res]);
      if (conn.waiting.length === PAUSE_AT) socket.pause();
      return;
    }
    this.#run(conn, req, res);
  };

  #run(conn: Connection | null, req: IncomingMessage, res: ServerResponse): void {
    if (conn !== null) conn.busy = true;
    const cap = this.#limits.maxInflightPerClient;
    // Without a cap, nothing is counted per client: no address is read, no map touched.
    const client = cap === null ? '' : clientAddress(req.socket.remoteAddress);
    const n = cap === null ? 0 : (this.#perClient.get(client) ?? 0);
    const watch = this.#watch(req, res);
    const counted = cap === null || n < cap;
    const admitted = () => {
      if (watch !== undefined) this.#unwatch(watch);
      if (counted && cap !== null) {
        const left = (this.#perClient.get(client) ?? 1) - 1;
        if (left === 0) this.#perClient.delete(client);
        else this.#perClient.set(client, left);
      }
      if (conn !== null) this.#done(conn);
    };
    if (!counted) {
      // Refused here: the pipeline never sees it, so admission listens itself ('close' comes
      // once: `on` spares the once-wrapper).
      res.on('close', admitted);
      // The body (if any) is not read: the connection closes after the answer.
      const startedAt = performance.now();
      const err = new GatewayError('CLIENT_LIMIT', `this client already has ${cap} requests in flight (limits.max_inflight_per_client)`);
      const id = requestIdOf(req);
      const bytes = sendError(res, err, id, true);
      this.#limits.onRefused?.(req, err, id, startedAt, null, bytes);
      return;
    }
    if (cap !== null) this.#perClient.set(client, n + 1);
    this.#next(req, res, admitted);
  }

  /** The connection's answer finished: start the next pipelined request, if one waits. */
  #done(conn: Connection): void {
    for (;;) {
      const next = conn.waiting.shift();
      if (conn.waiting.length === PAUSE_AT / 2 && next !== undefined) next[0].socket.resume();
      if (next === undefined) {
        conn.busy = false;
        return;
      }
      // A client that went away while its requests waited: nothing to answer.
      if (next[1].destroyed || next[0].socket.destroyed) continue;
      this.#run(conn, next[0], next[1]);
      return;
    }
  }

  #watch(req: IncomingMessage, res: ServerResponse): Watch | undefined {
    if (this.#limits.writeIdleMs === 0 && this.#limits.bodyIdleMs === 0) return undefined;
    const socket = req.socket;
    const now = performance.now();
    const head = this.#head;
    const w: Watch = {
      req,
      res,
      socket,
      read: socket.bytesRead,
      readAt: now,
      flushed: flushed(socket),
      flushedAt: now,
      prev: null,
      next: head,
      listed: true,
    };
    if (head !== null) head.prev = w;
    this.#head = w;
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#check(), this.#tickMs);
      this.#timer.unref();
    }
    return w;
  }

  /** Out of the list, its links cleared so that nothing it pointed at stays reachable through it. */
  #unwatch(w: Watch): void {
    if (!w.listed) return;
    w.listed = false;
    if (w.prev === null) this.#head = w.next;
    else w.prev.next = w.next;
    if (w.next !== null) w.next.prev = w.prev;
    w.prev = w.next = null;
  }

  #check(): void {
    if (this.#head === null) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    const now = performance.now();
    const { writeIdleMs, bodyIdleMs } = this.#limits;
    for (let w: Watch | null = this.#head, next: Watch | null; w !== null; w = next) {
      next = w.next;
      const { req, res, socket } = w;
      if (socket.destroyed) {
        this.#unwatch(w);
        continue;
      }
      const read = socket.bytesRead;
      // Idle only while the body buffer has room: a full one means Manifold is not reading
      // (the target is slow to take the upload), not that the client stopped sending.
      if (read !== w.read || req.complete || req.readableLength >= req.readableHighWaterMark) {
        w.read = read;
        w.readAt = now;
      } else if (bodyIdleMs > 0 && now - w.readAt > bodyIdleMs) {
        this.#unwatch(w);
        if (!res.headersSent) {
          sendError(res, new GatewayError('REQUEST_TIMEOUT', `no request body byte arrived for ${bodyIdleMs} ms (limits.body_idle_timeout)`), requestIdOf(req), true);
          // The attempt streaming this body upstream must fail too (the 408 is a finished
          // answer, which would not abort it): end the body once the 408 is on its way.
          setImmediate(() => req.destroy());
        } else socket.destroy();
        continue;
      }
      const out = flushed(socket);
      if (out !== w.flushed || pending(socket) === 0) {
        w.flushed = out;
        w.flushedAt = now;
      } else if (writeIdleMs > 0 && now - w.flushedAt > writeIdleMs) {
        // The client stopped reading its answer: cut it, which aborts the attempt upstream.
        this.#unwatch(w);
        socket.destroy();
      }
    }
  }
}

/** Bytes waiting to be written: Node's buffer plus libuv's queue (the kernel's buffer is full). */
function pending(socket: Socket): number {
  return socket.writableLength + queued(socket);
}

/** Bytes that left for the kernel; grows while the client reads. */
function flushed(socket: Socket): number {
  return (socket.bytesWritten ?? 0) - pending(socket);
}

function queued(socket: Socket): number {
  return (socket as unknown as { _handle?: { writeQueueSize?: number } })._handle?.writeQueueSize ?? 0;
}
