/**
 * Full TLS handshakes per second, in this process: `concurrency` loops, each opening a new TLS
 * connection (no session offered, so never a resumption), sending one HTTP/1.1 GET with
 * `Connection: close` and reading the answer to the server's close. A connection counts when
 * the answer is a 200 with its whole Content-Length body; anything else (another status, a
 * short body, a handshake or socket error, a timeout) makes the measurement invalid.
 */
import { performance } from 'node:perf_hooks';
import { connect } from 'node:tls';
import { Latencies, type Measurement } from './load.ts';

export interface HandshakeOptions {
  host: string;
  port: number;
  path: string;
  concurrency: number;
  /** Seconds. */
  duration: number;
  /** The CA to verify the server's certificate with. */
  ca: string | Buffer;
  /** SNI name, the certificate's name and the Host header. */
  servername: string;
  timeoutMs?: number;
}

type Outcome = { status: number; ms: number } | { error: string };

/** The status of a complete `Connection: close` answer, or why it is not one. */
export function parseAnswer(raw: Buffer): Outcome | { status: number } {
  const headEnd = raw.indexOf('\r\n\r\n');
  if (headEnd < 0) return { error: raw.length === 0 ? 'closed without an answer' : 'incomplete response head' };
  const head = raw.subarray(0, headEnd).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
  if (m === null) return { error: 'not an HTTP/1.1 answer' };
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  const body = raw.length - headEnd - 4;
  if (length !== null && body < Number(length[1])) return { error: `short body (${body} of ${length[1]} bytes)` };
  return { status: Number(m[1]) };
}

function once(options: HandshakeOptions, request: Buffer, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve(outcome);
    };
    const socket = connect({
      host: options.host,
      port: options.port,
      ca: options.ca,
      servername: options.servername,
      ALPNProtocols: ['http/1.1'],
    });
    socket.setTimeout(timeoutMs, () => done({ error: 'timeout' }));
    // write, not end: a half-closed client makes node:http abort a request it is still proxying.
    socket.once('secureConnect', () => socket.write(request));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => done({ error: err.code ?? err.message }));
    socket.on('close', () => {
      const answer = parseAnswer(Buffer.concat(chunks));
      done('error' in answer ? answer : { status: answer.status, ms: performance.now() - t0 });
    });
  });
}

export async function measureHandshakes(options: HandshakeOptions): Promise<Measurement> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const request = Buffer.from(`GET ${options.path} HTTP/1.1\r\nhost: ${options.servername}\r\nconnection: close\r\n\r\n`);
  const latencies = new Latencies();
  const statuses = new Map<number, number>();
  const errors = new Map<string, number>();
  let ok = 0;
  const end = performance.now() + options.duration * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const outcome = await once(options, request, timeoutMs);
      if ('error' in outcome) errors.set(outcome.error, (errors.get(outcome.error) ?? 0) + 1);
      else if (performance.now() > end) return;
      else if (outcome.status === 200) {
        ok++;
        latencies.add(outcome.ms);
      } else statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  const problems: string[] = [];
  for (const [status, count] of statuses) problems.push(`${count} × status ${status}`);
  for (const [error, count] of errors) problems.push(`${count} × ${error}`);
  if (ok === 0 && problems.length === 0) problems.push('no answers at all');
  const [p50, p99] = latencies.percentiles([0.5, 0.99]);
  return { rps: ok / options.duration, p50, p99, ok, seconds: options.duration, problems };
}
