/**
 * HTTP/2 load (autocannon speaks only HTTP/1.1), in this process with node:http2: `sessions`
 * connections, each keeping `streams` GETs in flight (closed loop: a stream that ends starts the
 * next one). As lib/load.ts: only 200 answers whose body arrived before the end of the window
 * count towards req/s and latency (from the request to its last byte), and anything else — another
 * status, a stream or session error, a timeout — makes the measurement invalid.
 */
import { performance } from 'node:perf_hooks';
import { type ClientHttp2Session, connect, constants } from 'node:http2';
import { Latencies, type Measurement } from './load.ts';

export interface H2LoadOptions {
  /** Origin, e.g. https://127.0.0.1:8443 (h2 over TLS) or http://127.0.0.1:8080 (h2c). */
  origin: string;
  /** Paths cycled through by every stream slot. */
  paths: readonly string[];
  sessions: number;
  /** Concurrent streams per session. */
  streams: number;
  /** Seconds. */
  duration: number;
  /** The CA to verify the server's certificate with; without it the certificate is not verified. */
  ca?: string | Buffer;
  /** SNI name, and the name the certificate is checked against. */
  servername?: string;
  /** Milliseconds before a stream counts as timed out. */
  timeoutMs?: number;
}

type Outcome = { status: number; ms: number } | { error: string };

function openSession(options: H2LoadOptions): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = connect(options.origin, {
      ...(options.ca === undefined ? { rejectUnauthorized: false } : { ca: options.ca }),
      ...(options.servername === undefined ? {} : { servername: options.servername }),
    });
    const fail = (err: Error) => reject(new Error(`HTTP/2 session to ${options.origin}: ${err.message}`));
    session.once('error', fail);
    session.once('connect', () => {
      session.off('error', fail);
      resolve(session);
    });
  });
}

function get(session: ClientHttp2Session, path: string, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    let status = 0;
    let settled = false;
    const done = (outcome: Outcome) => {
      if (settled) return;
      settled = true;
      resolve(outcome);
    };
    let stream;
    try {
      stream = session.request({ ':method': 'GET', ':path': path }, { endStream: true });
    } catch (err) {
      done({ error: (err as Error).message });
      return;
    }
    stream.setTimeout(timeoutMs, () => {
      stream.close(constants.NGHTTP2_CANCEL);
      done({ error: 'timeout' });
    });
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
    });
    stream.on('error', (err: Error) => done({ error: err.message }));
    stream.on('end', () => done(status === 0 ? { error: 'no response headers' } : { status, ms: performance.now() - t0 }));
    // A stream reset by the peer closes without 'end' (and sometimes without 'error').
    stream.on('close', () => done({ error: `stream closed (code ${stream.rstCode})` }));
    stream.resume();
  });
}

export async function measureH2(options: H2LoadOptions): Promise<Measurement> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const problems: string[] = [];
  let sessions: ClientHttp2Session[];
  try {
    sessions = await Promise.all(Array.from({ length: options.sessions }, () => openSession(options)));
  } catch (err) {
    return { rps: 0, p50: Number.NaN, p99: Number.NaN, ok: 0, seconds: options.duration, problems: [(err as Error).message] };
  }
  const sessionErrors: string[] = [];
  for (const s of sessions) {
    s.on('error', (err: Error) => sessionErrors.push(err.message));
    s.on('goaway', (code: number) => sessionErrors.push(`GOAWAY (code ${code})`));
  }

  const latencies = new Latencies();
  const statuses = new Map<number, number>();
  const errors = new Map<string, number>();
  let ok = 0;
  const start = performance.now();
  const end = start + options.duration * 1000;

  const slot = async (session: ClientHttp2Session, first: number): Promise<void> => {
    for (let i = first; performance.now() < end; i++) {
      if (session.destroyed || session.closed) {
        errors.set('session closed', (errors.get('session closed') ?? 0) + 1);
        return;
      }
      const outcome = await get(session, options.paths[i % options.paths.length], timeoutMs);
      if ('error' in outcome) {
        errors.set(outcome.error, (errors.get(outcome.error) ?? 0) + 1);
        continue;
      }
      // Answers after the window are neither counted nor a problem (as autocannon's).
      if (performance.now() > end) return;
      if (outcome.status === 200) {
        ok++;
        latencies.add(outcome.ms);
      } else statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
    }
  };
  await Promise.all(sessions.flatMap((s, i) => Array.from({ length: options.streams }, (_, j) => slot(s, i + j))));
  await Promise.all(
    sessions.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.closed || s.destroyed) resolve();
          else s.close(() => resolve());
        }),
    ),
  );

  for (const [status, count] of statuses) problems.push(`${count} × status ${status}`);
  for (const [error, count] of errors) problems.push(`${count} stream errors: ${error}`);
  for (const e of new Set(sessionErrors)) problems.push(`session: ${e}`);
  if (ok === 0 && problems.length === 0) problems.push('no answers at all');
  const [p50, p99] = latencies.percentiles([0.5, 0.99]);
  return { rps: ok / options.duration, p50, p99, ok, seconds: options.duration, problems };
}
