/**
 * `log.format: text` (issue 13): human log lines in the shape of Go's `log` package, which
 * balancing-reverse-proxy writes — `<prefix> 2006/01/02 15:04:05[.000000] <message>` — instead
 * of pino's JSON. It is a destination for the one pino logger: every JSON line pino writes is
 * rewritten here, so nothing on the request path knows about the format (the JSON path stays
 * as fast as it is; text costs one JSON.parse per line, which only text users pay).
 *
 * The access-log line (`"msg":"request"`) becomes the seed's sentence,
 * `request <url> served in <Go duration> by endpoint <index>`, the index being the answering
 * target's position in its pool (-1: none was accepted). A request answered with the route's
 * `exhausted` answer is preceded by `endpoints failed to return a valid answer, returning <status>`,
 * the seed's words. Any other line is its message followed by `key=value` for its fields.
 * The time is taken when the line is written (pino's own timestamp has only milliseconds).
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { Config, LogTextConfig } from '../config/schema.ts';
import type { Snapshot } from './snapshot.ts';
import { EXHAUSTED_CODE } from '../strategy/exhausted.ts';

type LogConfig = Config['log'];

/** Fields every pino line has, which a text line does not repeat. */
const OMITTED = new Set(['level', 'time', 'pid', 'hostname', 'msg']);

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Go `log`'s header for the flags Ldate, Ltime, Lmicroseconds and LUTC, at `epochMs`. */
export function textHeader(epochMs: number, opts: Readonly<LogTextConfig>): string {
  let out = opts.prefix === '' ? '' : `${opts.prefix} `;
  const time = opts.time || opts.microseconds;
  if (!opts.date && !time) return out;
  const d = new Date(Math.floor(epochMs));
  const utc = opts.utc;
  if (opts.date) {
    const y = utc ? d.getUTCFullYear() : d.getFullYear();
    const m = (utc ? d.getUTCMonth() : d.getMonth()) + 1;
    const day = utc ? d.getUTCDate() : d.getDate();
    out += `${pad(y, 4)}/${pad(m)}/${pad(day)} `;
  }
  if (time) {
    const h = utc ? d.getUTCHours() : d.getHours();
    const min = utc ? d.getUTCMinutes() : d.getMinutes();
    const s = utc ? d.getUTCSeconds() : d.getSeconds();
    out += `${pad(h)}:${pad(min)}:${pad(s)}`;
    // Truncated like Go's; the epsilon absorbs binary floating point (0.9 ms is 0.89999…).
    if (opts.microseconds) out += `.${pad(Math.min(999_999, Math.floor((epochMs % 1000) * 1000 + 1e-3)), 6)}`;
    out += ' ';
  }
  return out;
}

/** `int.frac` of `value / 10^digits`, trailing zeros of the fraction dropped (Go's fmtFrac). */
function fraction(value: number, digits: number): string {
  const unit = 10 ** digits;
  const int = Math.floor(value / unit);
  const frac = value % unit;
  if (frac === 0) return String(int);
  return `${int}.${String(frac).padStart(digits, '0').replace(/0+$/, '')}`;
}

/** Go's `time.Duration.String()` for a number of nanoseconds: `983.247916ms`, `1m30s`, `0s`. */
export function goDuration(nanoseconds: number): string {
  const ns = Math.round(Math.abs(nanoseconds));
  const sign = nanoseconds < 0 && ns !== 0 ? '-' : '';
  if (ns === 0) return '0s';
  if (ns < 1e3) return `${sign}${ns}ns`;
  if (ns < 1e6) return `${sign}${fraction(ns, 3)}µs`;
  if (ns < 1e9) return `${sign}${fraction(ns, 6)}ms`;
  const seconds = `${fraction(ns % 6e10, 9)}s`;
  const minutes = Math.floor(ns / 6e10);
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return sign + (h > 0 ? `${h}h${m}m${seconds}` : m > 0 ? `${m}m${seconds}` : seconds);
}

/** Position of `target` in the pool of route `routeId` in the live snapshot; -1 when none. */
export function endpointIndex(snapshot: Snapshot | null, routeId: unknown, target: unknown): number {
  if (snapshot === null || typeof target !== 'string') return -1;
  const route = snapshot.routes.find((r) => r.id === routeId);
  if (route === undefined || route.action.kind !== 'proxy') return -1;
  const pool = snapshot.pools.get(route.action.pool);
  return pool === undefined ? -1 : pool.targets.findIndex((t) => t.id === target);
}

function fields(record: Record<string, unknown>): string {
  let out = '';
  for (const [key, value] of Object.entries(record)) {
    if (OMITTED.has(key) || value === undefined) continue;
    out += ` ${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`;
  }
  return out;
}

/** The text of one pino record (without the header); several lines for an exhausted request. */
export function textLines(record: Record<string, unknown>, snapshot: Snapshot | null): string[] {
  const msg = typeof record.msg === 'string' ? record.msg : '';
  if (msg !== 'request' || typeof record.duration_ms !== 'number') return [`${msg}${fields(record)}`];
  const exhausted = record.error === EXHAUSTED_CODE;
  const index = exhausted ? -1 : endpointIndex(snapshot, record.route, record.target);
  const line = `request ${String(record.url)} served in ${goDuration(record.duration_ms * 1e6)} by endpoint ${index}`;
  if (!exhausted) return [line];
  return [`endpoints failed to return a valid answer, returning ${String(record.status)}`, line];
}

/**
 * The pino destination of `log.format: text`: rewrites each JSON line and writes it to `out`.
 * `view` gives the live snapshot (for endpoint indexes) once the runtime has started.
 */
export class TextDestination {
  readonly #out: NodeJS.WritableStream;
  readonly #opts: Readonly<LogTextConfig>;
  view: (() => Snapshot) | null = null;

  constructor(out: NodeJS.WritableStream, opts: Readonly<LogTextConfig>) {
    this.#out = out;
    this.#opts = opts;
  }

  write(chunk: string): boolean {
    const now = performance.timeOrigin + performance.now();
    let text = '';
    for (const json of chunk.split('\n')) {
      if (json === '') continue;
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(json) as Record<string, unknown>;
      } catch {
        record = { msg: json };
      }
      const header = textHeader(now, this.#opts);
      for (const line of textLines(record, this.view?.() ?? null)) text += `${header}${line}\n`;
    }
    return this.#out.write(text);
  }

  /** pino's `logger.flush(cb)` reaches the destination underneath. */
  flush(cb?: (err?: Error) => void): void {
    const out = this.#out as { flush?: (cb?: (err?: Error) => void) => void };
    if (typeof out.flush === 'function') out.flush(cb);
    else cb?.();
  }
}

/** The text destination for `log.format: text` over `out` (default: stdout), or null for JSON. */
export function textDestination(log: Readonly<LogConfig>, out?: NodeJS.WritableStream): TextDestination | null {
  if (log.format !== 'text') return null;
  // Synchronous: lines in the order they were logged, the last ones kept at exit (as Go's log).
  const stream = out ?? (pino.destination({ dest: 1, sync: true }) as unknown as NodeJS.WritableStream);
  return new TextDestination(stream, log.text);
}
