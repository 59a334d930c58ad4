/**
 * Load generation with autocannon's programmatic API, in this process. Keep-alive
 * connections, no pipelining. Latency percentiles are computed here from every response's
 * own time (autocannon's histogram rounds to whole milliseconds, too coarse for a proxy on
 * loopback); only 200 answers count towards req/s and latency, and anything else — another
 * status, a socket error, a timeout, a request left unanswered — makes the measurement invalid.
 */
import autocannon from 'autocannon';

export interface LoadOptions {
  /** Origin, e.g. http://127.0.0.1:8080 or https://127.0.0.1:8443 */
  origin: string;
  /** For an https origin: the SNI name sent (autocannon never verifies the certificate). */
  servername?: string;
  /** Paths cycled through by every connection. */
  paths: readonly string[];
  connections: number;
  /** Seconds. */
  duration: number;
}

export interface Measurement {
  /** 200 answers per second. */
  rps: number;
  /** Milliseconds. */
  p50: number;
  p99: number;
  /** 200 answers. */
  ok: number;
  seconds: number;
  /** Every way the measurement went wrong; empty when valid. */
  problems: string[];
}

/** A growable list of latencies in milliseconds. */
export class Latencies {
  #values = new Float64Array(1 << 16);
  #length = 0;

  add(ms: number): void {
    if (this.#length === this.#values.length) {
      const bigger = new Float64Array(this.#values.length * 2);
      bigger.set(this.#values);
      this.#values = bigger;
    }
    this.#values[this.#length++] = ms;
  }

  /** Nearest-rank percentiles, q in (0, 1]. */
  percentiles(qs: readonly number[]): number[] {
    const n = this.#length;
    if (n === 0) return qs.map(() => Number.NaN);
    const sorted = this.#values.subarray(0, n).sort();
    return qs.map((q) => sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]);
  }
}

export async function measure(options: LoadOptions): Promise<Measurement> {
  const latencies = new Latencies();
  let ok = 0;
  const instance = autocannon({
    url: `${options.origin}${options.paths[0]}`,
    requests: options.paths.map((path) => ({ method: 'GET', path })),
    connections: options.connections,
    duration: options.duration,
    pipelining: 1,
    timeout: 10,
    ...(options.servername === undefined ? {} : { servername: options.servername }),
  });
  instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    if (status === 200) {
      ok++;
      latencies.add(ms);
    }
  });
  const result = await instance;
  const problems: string[] = [];
  if (result.errors > 0) {
    const timeouts = result.timeouts > 0 ? ` (${result.timeouts} timeouts)` : '';
    problems.push(`${result.errors} errors${timeouts}`);
  }
  let answered = 0;
  for (const [status, { count }] of Object.entries(result.statusCodeStats)) {
    answered += count;
    if (status !== '200') problems.push(`${count} × status ${status}`);
  }
  // autocannon silently reconnects when the server closes a connection, and the request in
  // flight is lost without an error. Sent minus answered may exceed what was still in flight
  // when the run stopped (one per connection) only by such losses (or by errors, counted above).
  const lost = result.requests.sent - answered - result.errors - options.connections;
  if (lost > 0) problems.push(`${lost} requests never answered (connection closed)`);
  if (ok === 0 && problems.length === 0) problems.push('no answers at all');
  const [p50, p99] = latencies.percentiles([0.5, 0.99]);
  const seconds = result.duration > 0 ? result.duration : options.duration;
  return { rps: ok / seconds, p50, p99, ok, seconds, problems };
}
