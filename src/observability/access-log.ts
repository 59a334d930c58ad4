/**
 * The access log's writer (issue 11 item 4): the same pino line as `log.info(fields, 'request')`
 * — level, time, the logger's bindings, the fields in order, msg — built by hand for the fixed
 * fields, and handed to the logger's own file destination in batches: when FLUSH_BYTES have
 * gathered, or FLUSH_MS after the first line of a batch, whichever comes first. Each write to
 * the destination is an fs.write (a syscall and a thread-pool round trip, dearer than building
 * the line); under load one carries some fifty lines, at rest a line waits at most FLUSH_MS.
 * Lines still pending when the process exits are written synchronously. Any other destination
 * (a stream given to createLogger, such as the tests' capture) gets each line as it is made.
 *
 * Only for loggers made by createLogger (logger.ts): the line shape follows its options.
 */
import { pino, type Logger } from 'pino';

/** What one access-log line says; optional fields are left out when absent, as before. */
export interface AccessFields {
  reqId: string;
  traceId: string | null;
  method: string;
  url: string;
  route: string | null;
  target: string | null;
  status: number;
  /** An upgrade (WebSocket) answer: written as `"upgrade":true` after the status. */
  upgrade?: boolean;
  /** Body bytes sent; null where they are not counted (a tunnel): then left out. */
  bytes: number | null;
  durationMs: number;
  error: string | null;
  /**
   * Listed only when there was more than one; written whole as JSON (strategy/types.ts
   * `AttemptRecord`s: typed loosely so that observability/ imports no feature, issue 11).
   */
  attempts: readonly object[] | null;
}

interface Destination {
  write(chunk: string): unknown;
  /** SonicBoom (pino.destination) has it: used at exit. */
  flushSync?(): void;
}

/** A batch is written once it holds this much (SonicBoom's own write size)… */
const FLUSH_BYTES = 16 * 1024;
/** …or this long after its first line. */
const FLUSH_MS = 50;

/** Access logs with lines waiting. */
const dirty = new Set<AccessLog>();
let timer: NodeJS.Timeout | null = null;
let exitHook = false;

function flushAll(): void {
  timer = null;
  for (const a of dirty) a.flush();
  dirty.clear();
}

/**
 * The time string of pino's isoTime, made once per millisecond: the date and time of day once
 * per second, the milliseconds appended (no Date object per line).
 */
let lastMs = -1;
let lastTime = '';
let lastSecond = -1;
let secondPrefix = '';
function isoTime(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    const second = Math.floor(now / 1000);
    if (second !== lastSecond) {
      lastSecond = second;
      // `YYYY-MM-DDTHH:MM:SS.` of `…SS.sssZ`.
      secondPrefix = `,"time":"${new Date(second * 1000).toISOString().slice(0, 20)}`;
    }
    const ms = now - second * 1000;
    lastTime = `${secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
  }
  return lastTime;
}

/**
 * A string as JSON: quoted as it is when nothing in it needs escaping (JSON.stringify escapes
 * only `"`, `\`, control characters and lone surrogates), else JSON.stringify's own text.
 */
// eslint-disable-next-line no-control-regex -- control characters are what JSON.stringify escapes
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;
function str(s: string): string {
  return PLAIN.test(s) ? `"${s}"` : JSON.stringify(s);
}

/** A number as JSON.stringify writes it (`null` when not finite). */
function num(n: number): string {
  return Number.isFinite(n) ? `${n}` : 'null';
}

export class AccessLog {
  readonly #log: Logger;
  readonly #stream: Destination;
  /** The logger's bindings as pino renders them (`,"pid":123`). */
  readonly #bindings: string;
  /**
   * Batching is for a file-descriptor destination (pino.destination, SonicBoom), where each
   * write is a syscall; any other stream (an in-process capture) gets each line at once.
   */
  readonly #batched: boolean;
  /**
   * The lines of the batch, joined when it is written: one copy into a flat string, where a
   * string grown by `+=` is a chain of ~50 pieces that costs more to flatten at the write
   * (measured in the gateway under load: 20 µs to join and measure a 16 KiB batch, 26 µs to
   * flatten and measure the grown one).
   */
  #lines: string[] = [];
  #bytes = 0;

  constructor(log: Logger) {
    this.#log = log;
    const symbols = pino.symbols as unknown as { streamSym: symbol; chindingsSym: symbol };
    const own = log as unknown as Record<symbol, unknown>;
    this.#stream = own[symbols.streamSym] as Destination;
    this.#bindings = (own[symbols.chindingsSym] as string | undefined) ?? '';
    this.#batched = typeof this.#stream.flushSync === 'function';
    if (!exitHook) {
      exitHook = true;
      process.on('exit', () => {
        for (const a of dirty) a.flush(true);
        dirty.clear();
      });
    }
  }

  write(f: AccessFields): void {
    if (!this.#log.isLevelEnabled('info')) return;
    // The fields in pino's order, written by hand (issue 11 item 4: 1.18 against 1.44 µs a
    // line with its batched write for JSON.stringify over an object of them, measured alone);
    // absent optional fields are left out, as JSON.stringify left out undefined.
    let line = `{"level":"info"${isoTime()}${this.#bindings},"req_id":${str(f.reqId)}`;
    if (f.traceId !== null) line += `,"trace_id":${str(f.traceId)}`;
    line += `,"method":${str(f.method)},"url":${str(f.url)},"route":${f.route === null ? 'null' : str(f.route)}`;
    line += `,"target":${f.target === null ? 'null' : str(f.target)},"status":${num(f.status)}`;
    if (f.upgrade === true) line += ',"upgrade":true';
    if (f.bytes !== null) line += `,"bytes":${num(f.bytes)}`;
    line += `,"duration_ms":${num(Math.round(f.durationMs * 1000) / 1000)}`;
    if (f.error) line += `,"error":${str(f.error)}`;
    if (f.attempts !== null && f.attempts.length > 1) line += `,"attempts":${JSON.stringify(f.attempts)}`;
    line += ',"msg":"request"}\n';
    this.#lines.push(line);
    this.#bytes += line.length;
    if (!this.#batched || this.#bytes >= FLUSH_BYTES) {
      this.flush();
      return;
    }
    dirty.add(this);
    // Unref'd: a pending line never keeps the process alive; the exit hook writes it.
    timer ??= setTimeout(flushAll, FLUSH_MS).unref();
  }

  /** Hands the pending lines to the destination; `sync` (at exit) also writes them out now. */
  flush(sync = false): void {
    const lines = this.#lines;
    if (lines.length === 0) return;
    const pending = lines.length === 1 ? lines[0]! : lines.join('');
    lines.length = 0;
    this.#bytes = 0;
    dirty.delete(this);
    this.#stream.write(pending);
    if (sync) {
      try {
        this.#stream.flushSync?.();
      } catch {
        // not ready or closed: nothing more can be done at exit
      }
    }
  }
}
