/**
 * The data plane's listeners (issue 14, item 1): one per `listeners[]` entry (or the `listen`
 * shorthand), all in front of one admission and one pipeline. Each is one bound socket:
 *
 * - plain HTTP/1.1: the node:http server of listener.ts binds itself (as before issue 14);
 * - plain with `http2: true`: a net.Server reads the first bytes of each connection; the
 *   HTTP/2 preface (`PRI * HTTP/2.0`) goes to node:http2 (h2c with prior knowledge), anything
 *   else to the HTTP/1.1 server, so both are spoken on the port (no `Upgrade: h2c`);
 * - TLS: a tls.Server terminates (certificates.ts: SNI, reload, mTLS) and hands each
 *   connection by its ALPN protocol to HTTP/2 (`h2`, when `http2: true`) or HTTP/1.1.
 *
 * Every listener is bound by every worker (`reusePort`); shutdown stops them all, drains them
 * all, and closes them all.
 */
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import { createServer as createNetServer, Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { NamedListener } from '../config/listeners.ts';
import type { Config } from '../config/schema.ts';
import { parseDuration } from '../lib/units.ts';
import type { Logger } from '../observability/logger.ts';
import { Certificates } from './certificates.ts';
import { DEFAULT_LISTENER_INFO, type ListenerInfo, tagListener } from './context.ts';
import { createHttp2, type Http2Side } from './http2.ts';
import { createListener, type Entry } from './listener.ts';
import type { Pipeline } from './pipeline.ts';

export interface BindOptions {
  exclusive?: boolean;
  reusePort?: boolean;
}

/**
 * Binds one listener's socket server (HTTP and tcp listeners alike). A failure names the
 * listener and its address; errors after that are logged, never thrown.
 */
export function bind(server: NetServer, spec: NamedListener, shared: BindOptions, log: Logger): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'the address is in use (by another process, or by a listener of this config on 0.0.0.0 or :: with the same port)'
          : err.code === 'EADDRNOTAVAIL'
            ? 'this host has no such address'
            : err.code === 'EACCES'
              ? 'permission denied (ports below 1024 need privileges)'
              : err.message;
      reject(new Error(`listener "${spec.name}" on ${spec.host}:${spec.port}: ${why}`, { cause: err }));
    };
    server.once('error', failed);
    server.listen({ host: spec.host, port: spec.port, ...shared }, () => {
      server.off('error', failed);
      server.on('error', (err) => log.error({ err }, 'listener error'));
      resolve();
    });
  });
}

/** net.Server's close: stops listening without http.Server's closing of idle connections. */
const netClose = NetServer.prototype.close;

const PREFACE = Buffer.from('PRI ');

export class Listener {
  readonly spec: NamedListener;
  readonly info: ListenerInfo;
  readonly #outer: NetServer;
  readonly #h1: HttpServer;
  readonly #h2: Http2Side | null;
  readonly #certs: Certificates | null;
  /** Connections of a dispatching (TLS, h2c) listener, for the end of the grace. */
  readonly #sockets = new Set<Socket>();
  readonly #log: Logger;

  /** The socket server that accepts this listener's connections (TCP, before TLS or HTTP). */
  get server(): NetServer {
    return this.#outer;
  }

  constructor(spec: NamedListener, config: Config, pipeline: Pipeline, log: Logger, admit: Entry['admit'], strip: ReadonlySet<string>) {
    this.spec = spec;
    this.#log = log.child({ listener: spec.name });
    this.info = Object.freeze({
      name: spec.name,
      proto: spec.tls === undefined ? 'http' : 'https',
      redirect: spec.redirect_https === undefined ? null : { ...spec.redirect_https },
    });
    const entry: Entry = { admit, prepare: prepareFor(this.info, strip, spec.tls?.client_subject_header ?? null) };
    this.#h1 = createListener(config, pipeline, this.#log, entry);
    this.#h2 = spec.http2 ? createHttp2(config, entry, this.#log, pipeline) : null;
    const headersMs = parseDuration(config.limits.headers_timeout);
    if (spec.tls !== undefined) {
      this.#certs = new Certificates(spec.tls, this.#log);
      const tls = createTlsServer({
        ...this.#certs.serverOptions(),
        ALPNProtocols: this.#h2 === null ? ['http/1.1'] : ['h2', 'http/1.1'],
        // The slowloris guard of the handshake: as long as a request head may take.
        handshakeTimeout: headersMs > 0 ? headersMs : 120_000,
      });
      tls.on('secureConnection', (socket: TLSSocket) => {
        if (socket.alpnProtocol === 'h2' && this.#h2 !== null) this.#h2.server.emit('connection', socket);
        else this.#h1.emit('connection', socket);
      });
      // With a listener here node leaves the socket open (a handshake timeout included): close it.
      tls.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
        this.#log.debug({ err: err.message, code: err.code }, 'TLS handshake failed');
        socket.destroy();
      });
      this.#certs.attach(tls);
      this.#outer = tls;
    } else if (this.#h2 !== null) {
      const h2 = this.#h2;
      this.#certs = null;
      this.#outer = createNetServer((socket) => sniff(socket, this.#h1, h2, headersMs));
    } else {
      this.#certs = null;
      this.#outer = this.#h1;
    }
    if (this.#outer !== this.#h1)
      this.#outer.on('connection', (s: Socket) => {
        this.#sockets.add(s);
        s.once('close', () => this.#sockets.delete(s));
      });
  }

  async listen(shared: BindOptions): Promise<void> {
    await bind(this.#outer, this.spec, shared, this.#log);
    // node:http checks its headers and request timeouts from 'listening' on; a server fed
    // connections by another one never hears it otherwise.
    if (this.#outer !== this.#h1) this.#h1.emit('listening');
  }

  get port(): number {
    const a = this.#outer.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  /** SIGHUP, `POST /config/reload`: the certificate files again (kept when unchanged or bad). */
  refreshCertificates(): void {
    this.#certs?.refresh();
  }

  /** The start of a drain: no new connection; HTTP/2 connections get GOAWAY (streams finish). */
  stopAccepting(): void {
    netClose.call(this.#outer);
    for (const s of this.#h2?.sessions ?? []) s.close();
  }

  connections(): Promise<number> {
    return new Promise<number>((resolve) => this.#outer.getConnections((_err, n) => resolve(n ?? 0)));
  }

  closeIdle(): void {
    this.#h1.closeIdleConnections();
  }

  closeAll(): void {
    this.#h1.closeAllConnections();
    for (const s of this.#h2?.sessions ?? []) s.destroy();
    for (const s of this.#sockets) s.destroy();
  }

  /** After closeAll: timers and watches. */
  close(): void {
    this.#certs?.close();
    // Stops node:http's timeout checks of a fed server (it never listened, so close() says so).
    if (this.#outer !== this.#h1) this.#h1.close();
  }
}

/**
 * What happens to each request before admission: its listener noted; the client-certificate
 * subject header removed whatever a client sent (on every listener: one that has no mTLS must
 * not pass on a forged one), then set from the verified certificate on an mTLS listener.
 */
function prepareFor(info: ListenerInfo, strip: ReadonlySet<string>, subjectHeader: string | null): (req: IncomingMessage) => void {
  if (strip.size === 0) {
    // The `listen` shorthand is what an untagged request is taken for: nothing to do per request.
    const plain = info.name === DEFAULT_LISTENER_INFO.name && info.proto === 'http' && info.redirect === null;
    return plain ? () => {} : (req) => tagListener(req, info);
  }
  return (req) => {
    tagListener(req, info);
    let forged = false;
    for (const name of strip) if (req.headers[name] !== undefined) forged = true;
    if (forged) {
      for (const name of strip) delete req.headers[name];
      const raw = req.rawHeaders;
      const kept: string[] = [];
      for (let i = 0; i < raw.length; i += 2) if (!strip.has(raw[i].toLowerCase())) kept.push(raw[i], raw[i + 1]);
      Object.defineProperty(req, 'rawHeaders', { value: kept, writable: true, configurable: true });
    }
    if (subjectHeader === null) return;
    const subject = subjectOf(req);
    if (subject === null) return;
    req.headers[subjectHeader] = subject;
    req.rawHeaders.push(subjectHeader, subject);
  };
}

const subjects = new WeakMap<TLSSocket, string | null>();

/** The verified client certificate's subject in RFC 4514 order, `CN=client, O=Acme`; null when none verified. */
function subjectOf(req: IncomingMessage): string | null {
  const stream = (req as { stream?: { session?: { socket?: unknown } } }).stream;
  const socket = (stream?.session?.socket ?? req.socket) as TLSSocket;
  if (!socket.authorized) return null;
  let subject = subjects.get(socket);
  if (subject === undefined) {
    const x509 = socket.getPeerX509Certificate();
    subject = x509 === undefined ? null : x509.subject.split('\n').join(', ');
    subjects.set(socket, subject);
  }
  return subject;
}

/**
 * h2c with prior knowledge next to HTTP/1.1 on one plain port: the first bytes decide. The
 * HTTP/2 preface starts `PRI `, a method no HTTP/1.1 request uses. A connection that sends
 * nothing within `limits.headers_timeout` is closed, as node:http would.
 */
function sniff(socket: Socket, h1: HttpServer, h2: Http2Side, timeoutMs: number): void {
  let got: Buffer = Buffer.alloc(0);
  const timer = timeoutMs > 0 ? setTimeout(() => socket.destroy(), timeoutMs).unref() : undefined;
  const onError = () => socket.destroy();
  const onData = (chunk: Buffer) => {
    got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
    if (got.length < PREFACE.length && PREFACE.subarray(0, got.length).equals(got)) return;
    socket.off('data', onData);
    socket.off('error', onError);
    clearTimeout(timer);
    socket.pause();
    socket.unshift(got);
    if (got.subarray(0, PREFACE.length).equals(PREFACE)) h2.server.emit('connection', socket);
    else {
      h1.emit('connection', socket);
      socket.resume();
    }
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.once('close', () => clearTimeout(timer));
}
