/**
 * The TLS suite (issue 14): requests per second and requests per proxy core over TLS, for
 * HTTP/1.1 keep-alive (autocannon), HTTP/2 (lib/h2load.ts: sessions × concurrent streams) and
 * full handshakes (lib/handshakes.ts: a new TLS connection per request, never resumed), through
 * Manifold (defaults) with a TLS + HTTP/2 listener, the minimal undici proxy behind node:http2's
 * secure server, node:http2 answering by itself (the floor: TLS + HTTP in Node, no proxying),
 * and nginx, HAProxy and Caddy when installed, all with the same self-signed certificate made
 * with openssl at the start of the run, in front of the same plain upstream. Warm-up, then
 * interleaved rounds; medians, and ratios as medians of per-round ratios, as the proxy suite.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { request } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  liveness,
  interleavedRounds,
  type Running,
  selectContestants,
  startContestants,
  startUpstream,
} from '../lib/contestants.ts';
import { cpuAvailable } from '../lib/cpu.ts';
import { measureHandshakes } from '../lib/handshakes.ts';
import { measureH2 } from '../lib/h2load.ts';
import { measure } from '../lib/load.ts';
import { type Child, inTempDir, stopAll, waitReady } from '../lib/processes.ts';
import { fmtFixed, fmtInt, loadAverages, log, machineLine, ratioCell, round, table } from '../lib/report.ts';
import {
  contestantsJson,
  judge,
  pairedRatio,
  type Sample,
  statusCell,
  type Summarised,
  summarise,
  summaryCells,
  withCpu,
} from '../lib/samples.ts';
import type { BenchOptions, Suite } from '../lib/suite.ts';
import { BODIES, type BodySpec } from '../peers/bodies.ts';
import { CONTESTANTS, type Contestant, type Started, type TlsContext } from './contestants.ts';

/** The name in the certificate, sent as SNI and Host. */
const NAME = 'localhost';
const SETTLE_MS = 300;

interface Mode {
  id: string;
  label: string;
  kind: 'h1' | 'h2' | 'handshake';
  body: BodySpec;
}

const [SMALL, LARGE] = BODIES;
const MODES: readonly Mode[] = [
  { id: 'h1-small', label: 'HTTP/1.1, 2 B', kind: 'h1', body: SMALL },
  { id: 'h2-small', label: 'h2, 2 B', kind: 'h2', body: SMALL },
  { id: 'h1-16k', label: 'HTTP/1.1, 16 KiB', kind: 'h1', body: LARGE },
  { id: 'h2-16k', label: 'h2, 16 KiB', kind: 'h2', body: LARGE },
  { id: 'handshake', label: 'handshake + 1 request, 2 B', kind: 'handshake', body: SMALL },
];

/** Manifold over another contestant, per proxy core; HAProxy's is issue 14's aim (within 2×). */
const RATIOS: ReadonlyArray<{ den: string; label: string; target?: number }> = [
  { den: 'node-tls', label: 'Manifold / node:http2 TLS, no proxy' },
  { den: 'undici-tls', label: 'Manifold / undici minimal, TLS' },
  { den: 'haproxy', label: 'Manifold / HAProxy', target: 0.5 },
  { den: 'nginx', label: 'Manifold / nginx' },
  { den: 'caddy', label: 'Manifold / Caddy' },
];

type Runner = Running<Contestant, Started>;

interface Load {
  connections: number;
  sessions: number;
  streams: number;
  handshakes: number;
  ca: Buffer;
}

function describe(m: Sample): string {
  const perCore = Number.isFinite(m.perCore) ? `${fmtInt(m.perCore).padStart(8)} /s/core` : ''.padStart(15);
  const base = `${fmtInt(m.rps).padStart(8)} /s ${perCore}  p50 ${fmtFixed(m.p50, 2).padStart(6)} ms  p99 ${fmtFixed(m.p99, 2).padStart(6)} ms  load ${loadavg()[0].toFixed(1)}`;
  return m.problems.length === 0 ? base : `${base}  INVALID: ${m.problems.join(', ')}`;
}

async function measureOne(r: Runner, mode: Mode, load: Load, seconds: number): Promise<Sample> {
  if (r.started.logFile !== undefined) truncateSync(r.started.logFile, 0);
  const port = r.started.port;
  return withCpu(r.started.child.pid, () => {
    if (mode.kind === 'h1')
      return measure({
        origin: `https://127.0.0.1:${port}`,
        servername: NAME,
        paths: [mode.body.path],
        connections: load.connections,
        duration: seconds,
      });
    if (mode.kind === 'h2')
      return measureH2({
        origin: `https://127.0.0.1:${port}`,
        servername: NAME,
        ca: load.ca,
        paths: [mode.body.path],
        sessions: load.sessions,
        streams: load.streams,
        duration: seconds,
      });
    return measureHandshakes({
      host: '127.0.0.1',
      port,
      servername: NAME,
      ca: load.ca,
      path: mode.body.path,
      concurrency: load.handshakes,
      duration: seconds,
    });
  });
}

/** One GET over TLS with HTTP/1.1 on a fresh, verified connection. */
function h1Get(port: number, path: string, ca: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, servername: NAME, ca, agent: false, timeout: 2000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Every body over h2 on one verified session, which must have negotiated `h2`. */
function h2Check(port: number, ca: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`https://127.0.0.1:${port}`, { ca, servername: NAME });
    session.on('error', reject);
    session.setTimeout(5000, () => session.destroy(new Error('h2 check timed out')));
    const one = (body: BodySpec) =>
      new Promise<void>((ok, fail) => {
        const stream = session.request({ ':path': body.path });
        let status = 0;
        const chunks: Buffer[] = [];
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('error', fail);
        stream.on('end', () => {
          const got = Buffer.concat(chunks);
          if (status !== 200) fail(new Error(`h2 GET ${body.path} answered ${status}`));
          else if (!got.equals(body.bytes)) fail(new Error(`h2 GET ${body.path}: ${got.length} bytes that differ from the upstream's`));
          else ok();
        });
      });
    session.once('connect', () => {
      const alpn = session.alpnProtocol;
      if (alpn !== 'h2') {
        session.destroy();
        reject(new Error(`ALPN negotiated ${alpn}, not h2`));
        return;
      }
      Promise.all(BODIES.map(one)).then(
        () => session.close(() => resolve()),
        (err: Error) => {
          session.destroy();
          reject(err);
        },
      );
    });
  });
}

/** Polls until the contestant answers over TLS, then checks every body over HTTP/1.1 and h2. */
async function ready(child: Child, port: number, ca: Buffer): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (!child.alive) throw new Error(child.describeExit());
    let last: string;
    try {
      const res = await h1Get(port, SMALL.path, ca);
      if (res.status === 200) break;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`not ready over TLS after 20 s (last: ${last}); ${child.tail()}`);
    await sleep(50);
  }
  for (const body of BODIES) {
    const res = await h1Get(port, body.path, ca);
    if (res.status !== 200) throw new Error(`GET ${body.path} answered ${res.status}`);
    if (!res.body.equals(body.bytes))
      throw new Error(`GET ${body.path} returned ${res.body.length} bytes that differ from the upstream's`);
  }
  await h2Check(port, ca);
}

/** What a default client negotiates with the contestant: protocol, cipher, key exchange group. */
function negotiated(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: NAME, ALPNProtocols: ['http/1.1'] }, () => {
      const key = socket.getEphemeralKeyInfo();
      const group = key && 'name' in key && key.name ? key.name : key && 'type' in key ? key.type : 'unknown';
      resolve(`${socket.getProtocol()}, ${socket.getCipher().name}, key exchange ${group}`);
      socket.destroy();
    });
    socket.setTimeout(2000, () => socket.destroy(new Error('TLS probe timed out')));
    socket.on('error', reject);
  });
}

/** A self-signed P-256 certificate for `localhost` and 127.0.0.1, made with openssl. */
function makeCertificate(tmp: string): Pick<TlsContext, 'cert' | 'key' | 'pem'> {
  const cert = join(tmp, 'cert.pem');
  const key = join(tmp, 'key.pem');
  const pem = join(tmp, 'cert+key.pem');
  try {
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-keyout', key,
        '-out', cert, '-subj', `/CN=${NAME}`, '-addext', `subjectAltName=DNS:${NAME},IP:127.0.0.1`],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  } catch (err) {
    throw new Error(`cannot make the test certificate with openssl (apt-get install openssl): ${(err as Error).message}`, { cause: err });
  }
  writeFileSync(pem, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  return { cert, key, pem };
}

function flag(options: BenchOptions, name: string, fallback: number): number {
  const raw = options.extra[name];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be an integer ≥ 1, not "${String(raw)}"`);
  return n;
}

function run(options: BenchOptions): Promise<Record<string, unknown>> {
  return inTempDir('manifold-bench-tls-', (tmp) => runIn(tmp, options));
}

async function runIn(tmp: string, options: BenchOptions): Promise<Record<string, unknown>> {
  const selected = selectContestants(CONTESTANTS, options.only);
  const sessions = flag(options, 'h2-sessions', 5);
  const streams = flag(options, 'h2-streams', 10);
  const handshakes = flag(options, 'handshake-concurrency', 16);

  log('Manifold TLS + HTTP/2 benchmark');
  log(machineLine());
  const estimate = selected.length * options.warmup + options.rounds * MODES.length * selected.length * (options.duration + SETTLE_MS / 1000);
  log(
    `HTTP/1.1: ${options.connections} keep-alive connections (autocannon); h2: ${sessions} sessions × ${streams} streams (node:http2); ` +
      `handshakes: ${handshakes} loops of a new TLS connection + 1 request, no resumption`,
  );
  log(`${options.warmup} s warm-up per contestant, ${options.rounds} round(s) × ${MODES.length} modes × ${options.duration} s; about ${Math.ceil(estimate)} s in all`);
  log(
    cpuAvailable()
      ? 'per core: 200 answers (or handshakes) ÷ CPU seconds (utime + stime, /proc) of the proxy process and its children over the window'
      : 'per core: not available (no /proc here); only rates',
  );
  if (availableParallelism() < 4)
    log(`note: ${availableParallelism()} cores for load generator, upstream and proxy: they compete, numbers are noisy — read the per-core figures and ratios`);
  log();

  const certs = makeCertificate(tmp);
  const ca = readFileSync(certs.cert);
  log(`certificate: self-signed ECDSA P-256 for ${NAME} and 127.0.0.1 (openssl), the same files for every contestant`);

  const upstream = await startUpstream();
  const upstreamOrigin = `http://127.0.0.1:${upstream.port}`;
  await waitReady(upstream.child, `${upstreamOrigin}${SMALL.path}`);
  const ctx: TlsContext = { upstream: upstreamOrigin, upstreamPort: upstream.port, tmp, ...certs };

  const tlsParams: Record<string, string> = {};
  const { running, skipped, versions } = await startContestants<TlsContext, Started, Contestant>(
    selected,
    ctx,
    async (started, contestant) => {
      await ready(started.child, started.port, ca);
      tlsParams[contestant.id] = await negotiated(started.port, ca);
      return `HTTP/1.1 and h2 bodies checked; ${tlsParams[contestant.id]}`;
    },
    log,
  );
  log();

  const usable = liveness(upstream.child, log);

  const load: Load = { connections: options.connections, sessions, streams, handshakes, ca };
  // Warm-up: a share of the time in each kind of load.
  for (const r of running) {
    if (options.warmup === 0 || !usable(r)) continue;
    for (const mode of [MODES[0], MODES[1], MODES[4]]) {
      const m = await measureOne(r, mode, load, options.warmup / 3);
      log(`warm-up ${r.contestant.id.padEnd(11)} ${mode.id.padEnd(9)} ${describe(m)}`);
    }
    await sleep(SETTLE_MS);
  }
  log();

  const results = new Map<string, Sample[]>();
  await interleavedRounds(running, options.rounds, MODES, usable, SETTLE_MS, async (r, mode, round) => {
    const m = await measureOne(r, mode, load, options.duration);
    const k = `${r.contestant.id}|${mode.id}`;
    results.set(k, [...(results.get(k) ?? []), m]);
    const logBytes = r.started.logFile !== undefined && m.ok > 0 ? `  log ${Math.round(statSync(r.started.logFile).size / m.ok)} B/req` : '';
    log(`round ${round + 1}/${options.rounds}  ${mode.id.padEnd(9)}  ${r.contestant.id.padEnd(11)} ${describe(m)}${logBytes}`);
  });
  await stopAll();
  log();
  return report(running, results, skipped, versions, tlsParams, options);
}

function report(
  running: readonly Runner[],
  results: Map<string, Sample[]>,
  skipped: ReadonlyArray<{ id: string; reason: string }>,
  versions: Record<string, string>,
  tlsParams: Record<string, string>,
  options: BenchOptions,
): Record<string, unknown> {
  const samples = (id: string, mode: Mode) => results.get(`${id}|${mode.id}`) ?? [];
  const summaries = new Map<string, Summarised>();
  for (const r of running)
    for (const mode of MODES) summaries.set(`${r.contestant.id}|${mode.id}`, summarise(samples(r.contestant.id, mode), r.dead));
  const valid = (id: string, mode: Mode) => summaries.get(`${id}|${mode.id}`)?.problems.length === 0;

  const rows: string[][] = [['mode', 'contestant', 'req/s', 'min–max over rounds', 'per core', 'p50 ms', 'p99 ms', 'status']];
  for (const mode of MODES)
    for (const r of running) {
      const s = summaries.get(`${r.contestant.id}|${mode.id}`)!;
      rows.push([mode.label, r.contestant.label, ...summaryCells(s), statusCell(s)]);
    }
  log(`Results (median over ${options.rounds} round(s); only 200 answers counted; handshake rows: new connections per second; per core = ÷ the proxy's own CPU seconds)`);
  log(table(rows, ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'left']));
  log();

  const has = (id: string) => running.some((r) => r.contestant.id === id);
  const ratios: Record<string, Record<string, { rps: number | null; per_core: number | null }>> = {};
  const met: Record<string, boolean> = {};
  const ratioRows: string[][] = [['ratio, per core', ...MODES.map((m) => m.label), 'target']];
  for (const spec of RATIOS) {
    if (!has('manifold') || !has(spec.den)) continue;
    const name = `manifold/${spec.den}`;
    ratios[name] = {};
    const cells = MODES.map((mode) => {
      const ok = valid('manifold', mode) && valid(spec.den, mode);
      const rps = ok ? pairedRatio(samples('manifold', mode), samples(spec.den, mode), 'rps') : Number.NaN;
      const perCore = ok ? pairedRatio(samples('manifold', mode), samples(spec.den, mode), 'perCore') : Number.NaN;
      ratios[name][mode.id] = { rps: round(rps, 3), per_core: round(perCore, 3) };
      return `${ratioCell(perCore)}${judge(met, `${name} ${mode.id}`, perCore, spec.target)}`;
    });
    ratioRows.push([spec.label, ...cells, spec.target === undefined ? '' : `≥ ${spec.target}× (within 2×)`]);
  }
  if (ratioRows.length > 1) {
    log('Ratios per proxy core (median over rounds of the ratio within each round; req/s ratios in the JSON)');
    log(table(ratioRows, ['left', ...MODES.map(() => 'right' as const), 'left']));
    log();
  }
  if (!has('haproxy')) log('target "within 2× of HAProxy per core": not judged, HAProxy did not run (apt-get install haproxy)');

  log('Setup');
  for (const r of running) log(`  ${r.contestant.note}`);
  for (const [id, v] of Object.entries(versions)) log(`  ${id} version: ${v}`);
  for (const [id, v] of Object.entries(tlsParams)) log(`  ${id} TLS: ${v}`);
  log(`  client: node ${process.version} (OpenSSL ${process.versions.openssl}), default groups; the handshake loop verifies the certificate`);
  for (const s of skipped) log(`  ${s.id}: skipped: ${s.reason}`);
  log(`  load average at the end: ${loadAverages()}`);
  log();

  const contestants = contestantsJson(
    running.map((r) => r.contestant.id),
    MODES,
    (id, mode) => [summaries.get(`${id}|${mode.id}`)!, samples(id, mode)],
  );
  return {
    node: process.version,
    cores: availableParallelism(),
    versions,
    tls: tlsParams,
    contestants,
    ratios,
    targets_met: met,
    skipped,
    valid: ![...summaries.values()].some((s) => s.problems.length > 0),
  };
}

export const suite: Suite = {
  description: 'TLS: HTTP/1.1 and h2 req/s, full handshakes/s, per proxy core: Manifold vs node:http2, undici, nginx, HAProxy, Caddy',
  options: {
    'h2-sessions': { type: 'string' },
    'h2-streams': { type: 'string' },
    'handshake-concurrency': { type: 'string' },
  },
  run,
};
