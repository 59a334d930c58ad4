/**
 * The request pipeline of a worker (DESIGN.md "Request flow"): context → route match → the
 * route's action handler → response, with one deadline per request and one access-log line.
 * The handlers (server/actions/) are compiled per route when a snapshot is published; here is
 * what every request shares: the context, in-flight count and drain, the match, the redirect,
 * the loop and body-size checks, and the answer's metrics and log line. Errors before headers
 * are rendered by server/respond.ts; after headers the socket is destroyed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { CompiledRoute } from '../config/compile.ts';
import type { Acceptor } from '../defer/accept.ts';
import { GatewayError, isGatewayError } from '../errors.ts';
import { AccessLog } from '../observability/access-log.ts';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type Forward, forward as baseForward } from '../proxy/forward.ts';
import { checkLoop } from '../proxy/headers.ts';
import { type OpenTunnel, tunnel } from '../proxy/upgrade.ts';
import { type Authority, dialConnect, parseAuthority, pipeTunnel, proxyAuthorized } from '../tunnel/connect.ts';
import type { ConnectAction } from '../tunnel/spec.ts';
import { findRoute } from '../routing/route-table.ts';
import { hostOf, type MatchInput } from '../routing/matcher.ts';
import { isIdempotent, runUpgrade } from '../strategy/index.ts';
import type { AttemptRecord } from '../strategy/types.ts';
import { type ActionHandler, ActionServices } from './actions/action.ts';
import { compileHandlers } from './actions/index.ts';
import { attemptForward, outboundRequest, type ProxyAction } from './actions/proxy.ts';
import { listenerOf, RequestContext, requestIdOf } from './context.ts';
import { requestProblem } from './listener.ts';
import { sendError, sendErrorOnSocket } from './respond.ts';
import type { Snapshot } from './snapshot.ts';
import { takeWireBytes } from './wire.ts';

/** Dot segments (also percent-encoded) would let a path escape the prefix a route matched. */
const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i;
/** How long a refused CONNECT's connection is kept for the client to read the answer and close. */
const REFUSAL_LINGER_MS = 2000;
/** The 405 of a CONNECT where no connect route could take it (issue 12: no open forward proxy). */
const NOT_A_FORWARD_PROXY = 'CONNECT is not supported: Manifold is a reverse proxy';

/**
 * Whether the answer went out whole. An HTTP/2 stream the client reset (RST_STREAM, e.g. a gRPC
 * deadline or a cancelled fetch) also reads `writableFinished`: its reset code says otherwise.
 */
function answered(res: ServerResponse): boolean {
  if (!res.writableFinished) return false;
  const code = (res as { stream?: { rstCode?: number } }).stream?.rstCode;
  return code === undefined || code === 0;
}

/** Splits req.url into the matchable path, or throws BAD_REQUEST. */
export function requestPath(url: string): string {
  if (url[0] !== '/')
    throw new GatewayError('BAD_REQUEST', 'request target must be an absolute path (origin-form)');
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  if (DOT_SEGMENT.test(path)) throw new GatewayError('BAD_REQUEST', 'path must not contain dot segments');
  return path;
}

export interface PipelineOptions {
  logger: Logger;
  forward?: Forward;
  /** Stores the requests of `defer` routes (issue 6); without it they get 503. */
  acceptor?: Acceptor;
  /** Where answers and attempts are counted (issue 7); null = `metrics.enabled: false`. */
  metrics?: Metrics | null;
}

/**
 * A published snapshot with the handler of each of its routes (issue 11 item 3): built whole,
 * then swapped by one assignment, so a request reads both from the same snapshot.
 */
interface Published {
  readonly snapshot: Snapshot;
  readonly handlers: ReadonlyMap<CompiledRoute, ActionHandler>;
}

export class Pipeline {
  #published: Published;
  readonly #services: ActionServices;
  readonly #access: AccessLog;
  #inflight = 0;
  /** Answers given (`GET /stats`): success = complete and below 500. Read by the runtime. */
  readonly downstream = { success: 0, failed: 0 };
  #idleWaiters: Array<() => void> = [];
  /** Open upgraded tunnels (WebSockets): in flight for the drain, sent away at the end of the grace. */
  readonly #tunnels = new Set<OpenTunnel>();

  constructor(snapshot: Snapshot, options: PipelineOptions) {
    this.#services = new ActionServices(
      options.logger,
      options.forward ?? baseForward,
      options.acceptor,
      options.metrics ?? null,
    );
    this.#access = new AccessLog(options.logger);
    this.#published = this.#publish(snapshot);
  }

  get snapshot(): Snapshot {
    return this.#published.snapshot;
  }

  /** Publishes a new snapshot; requests already running keep the one they read. */
  setSnapshot(snapshot: Snapshot): void {
    this.#published = this.#publish(snapshot);
  }

  #publish(snapshot: Snapshot): Published {
    return Object.freeze({ snapshot, handlers: compileHandlers(snapshot, this.#services) });
  }

  get inflight(): number {
    return this.#inflight;
  }

  /**
   * The end of `shutdown.grace` (issue 15): every open tunnel is ended, a WebSocket with a
   * close frame 1001 (Going Away) at a frame boundary rather than a cut (1006).
   */
  closeTunnels(): void {
    for (const t of [...this.#tunnels]) t.goAway();
  }

  #settled(): void {
    if (--this.#inflight === 0 && this.#idleWaiters.length > 0) {
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  /** From now on every answer carries `Connection: close`; resolves when nothing is in flight. */
  drain(): Promise<void> {
    this.#services.draining = true;
    if (this.#inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** `admitted`: admission's end of the request (server/admission.ts), run after the log line. */
  handle = (req: IncomingMessage, res: ServerResponse, admitted?: () => void): void => {
    const published = this.#published;
    const snapshot = published.snapshot;
    const ctx = new RequestContext(req, performance.now(), snapshot.tracing);
    this.#inflight++;
    // Taken now: a request whose connection closed no longer has its socket at 'close'.
    const socket = req.socket;
    // 'close' comes once: `on` spares the once-wrapper per request. The one listener of the
    // request: admission's end runs from it too (even if the log line threw).
    res.on('close', () => {
      try {
        this.#finish(req, res, ctx, snapshot, socket);
      } finally {
        admitted?.();
      }
    });
    if (this.#services.draining) res.shouldKeepAlive = false;
    try {
      const route = findRoute(snapshot.routes, this.#matchInput(req, ctx));
      // Issue 14: a `redirect_https` listener answers with a redirect, except on the routes
      // that name it (ACME http-01 challenges must be answered over plain HTTP).
      if (ctx.listener.redirect !== null && route?.listeners == null) {
        this.#redirect(req, res, ctx, ctx.listener.redirect);
        return;
      }
      if (route === undefined)
        throw new GatewayError(
          'ROUTE_NOT_FOUND',
          `no route matches ${req.method} ${requestPath(req.url ?? '')}`,
        );
      ctx.route = route;
      checkLoop(req.rawHeaders, route.forwarding);
      if (route.maxBodyBytes !== null) {
        const declared = req.headers['content-length'];
        if (declared !== undefined && Number(declared) > route.maxBodyBytes) {
          throw new GatewayError(
            'BODY_TOO_LARGE',
            `request body of ${declared} bytes is larger than ${route.maxBodyBytes}`,
          );
        }
      }
      // The route's action, chosen when the snapshot was published (server/actions/).
      published.handlers.get(route)!(req, res, ctx);
    } catch (err) {
      this.#services.fail(res, ctx, err);
    }
  };

  #matchInput(req: IncomingMessage, ctx: RequestContext): MatchInput {
    // RFC 9112: HTTP/0.9 or 2.0 in the request line; no Host on HTTP/1.1, several, or an invalid one (listener.ts).
    const problem = requestProblem(req);
    if (problem !== null) throw problem;
    return {
      method: req.method ?? 'GET',
      host: hostOf(req.headers.host),
      path: requestPath(req.url ?? ''),
      headers: req.headers,
      listener: ctx.listener.name,
    };
  }

  /** `redirect_https` (issue 14): the same host and path over https; the Host was checked (listener.ts). */
  #redirect(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, to: { status: number; port: number }): void {
    const host = hostOf(req.headers.host);
    if (host === '') throw new GatewayError('BAD_REQUEST', 'a redirect to https needs a Host header');
    const location = `https://${host}${to.port === 443 ? '' : `:${to.port}`}${req.url ?? '/'}`;
    ctx.status = to.status;
    res.writeHead(to.status, ['location', location, 'content-length', '0', 'x-request-id', ctx.id]);
    res.end();
  }

  #finish(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, snapshot: Snapshot, socket: Socket): void {
    const finished = answered(res);
    if (!finished && ctx.errorCode === null) {
      ctx.errorCode = 'CLIENT_CLOSED';
      ctx.status = 499;
    }
    if (finished && res.statusCode < 500) this.downstream.success++;
    else this.downstream.failed++;
    const ms = performance.now() - ctx.startedAt;
    const metrics = this.#services.metrics;
    if (metrics !== null) {
      const route = ctx.route;
      metrics.request(route?.id ?? null, req.method, ctx.status, ms / 1000);
      if (ctx.attempts !== null && route !== null && route.action.kind === 'proxy')
        metrics.attempts(route.id, route.action.pool, ctx.attempts);
      // Issue 11: an overflow route's direct delivery spends attempts through the same runner.
      else if (ctx.attempts !== null && route !== null && route.action.kind === 'defer')
        metrics.attempts(route.id, route.action.spec.pool, ctx.attempts);
      // Issue 17: read once from the socket's counters, no listener per chunk (server/wire.ts).
      // HTTP/2 streams share one socket: there, the body bytes sent and the declared length.
      if (req.httpVersionMajor === 1) {
        const wire = takeWireBytes(socket);
        metrics.bytes(route?.id ?? null, ctx.target, wire.in, wire.out);
      } else metrics.bytes(route?.id ?? null, ctx.target, Number(req.headers['content-length'] ?? 0) || 0, ctx.bytesOut);
    }
    if (snapshot.accessLog) {
      this.#access.write({
        reqId: ctx.id,
        traceId: ctx.trace !== null ? ctx.trace.traceId : null,
        method: req.method ?? '',
        url: req.url ?? '',
        route: ctx.route?.id ?? null,
        target: ctx.target,
        status: ctx.status,
        bytes: ctx.bytesOut,
        durationMs: ms,
        error: ctx.errorCode,
        // A single attempt is already described by target, status and error.
        attempts: ctx.attempts,
      });
    }
    // After the log line, as before: aborting first would rewrite what the attempts recorded.
    ctx.deadline.closed(finished);
    this.#settled();
  }

  /**
   * An answer given before the pipeline took the request (issue 15: a 417 to an `Expect` it
   * cannot meet, a 429 under `limits.max_inflight_per_client`, the 405 to CONNECT, the 400/431
   * to a head node:http could not parse, an upgrade no proxy route takes): counted and
   * access-logged like any other answer, with the route when one matched. `req` is null where no
   * head was parsed; the duration stays out of the histogram, as no request was handled.
   */
  refused = (
    req: IncomingMessage | null,
    err: GatewayError,
    reqId: string,
    startedAt: number,
    route: string | null = null,
    bytes: number | null = null,
  ): void => {
    this.#services.metrics?.request(route, req?.method, err.status, null);
    if (!this.#published.snapshot.accessLog) return;
    this.#access.write({
      reqId,
      traceId: null,
      method: req?.method ?? '',
      url: req?.url ?? '',
      route,
      target: null,
      status: err.status,
      bytes,
      durationMs: performance.now() - startedAt,
      error: err.code,
      attempts: null,
    });
  };

  /**
   * Upgrade requests (WebSocket): matched like any request, then the upgrade spends its attempt
   * through the strategy runner and the route's Forward like a proxied request (issue 11:
   * passive health, attempt metrics, connect retry on another target), then tunnels.
   */
  upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const snapshot = this.#published.snapshot;
    const ctx = new RequestContext(req, performance.now(), snapshot.tracing);
    socket.on('error', () => socket.destroy());
    // The downstream leaving ends the request's one deadline (issue 11), as #finish does for answers.
    socket.once('close', () => ctx.deadline.closed(false));
    try {
      const route = findRoute(snapshot.routes, this.#matchInput(req, ctx));
      if (route === undefined) throw new GatewayError('ROUTE_NOT_FOUND');
      ctx.route = route;
      if (route.action.kind !== 'proxy')
        throw new GatewayError('BAD_REQUEST', 'this route does not accept upgrades');
      if (ctx.listener.redirect !== null && route.listeners === null)
        throw new GatewayError('BAD_REQUEST', 'this listener redirects to https: upgrade there');
      checkLoop(req.rawHeaders, route.forwarding);
      const action = route.action;
      this.#upgrade(req, socket, head, ctx, route, action, snapshot);
    } catch (err) {
      const e = isGatewayError(err) ? err : new GatewayError('INTERNAL', undefined, { cause: err });
      if (e.code === 'INTERNAL') this.#services.log.error({ req_id: ctx.id, err }, 'unexpected error');
      const bytes = sendErrorOnSocket(socket, e, ctx.id);
      this.refused(req, e, ctx.id, ctx.startedAt, ctx.route?.id ?? null, bytes);
    }
  };

  /**
   * `CONNECT host:port` (issue 17). A CONNECT is matched against connect routes only, with its
   * authority's host as the host (compile.ts `connectMatch`); no connect route taking it is the
   * 405 Manifold has always answered (issue 12: Manifold is no open forward proxy). A matched one
   * is answered by the route's connect action (tunnel/connect.ts), every refusal through the one
   * renderer, and gets one access-log line when it ends: 200 with the bytes both ways for a
   * tunnel, or the refusal's status.
   */
  connect = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const snapshot = this.#published.snapshot;
    const startedAt = performance.now();
    socket.on('error', () => socket.destroy());
    const routes = snapshot.routes;
    let route: CompiledRoute | undefined;
    let authority: Authority | null = null;
    let refusal: GatewayError | null = null;
    if (routes.some((r) => r.action.kind === 'connect')) {
      try {
        const problem = requestProblem(req);
        if (problem !== null) throw problem;
        authority = parseAuthority(req.url ?? '');
        const input: MatchInput = {
          method: 'CONNECT',
          host: authority.matchHost,
          path: '',
          headers: req.headers,
          listener: listenerOf(req).name,
        };
        route = routes.find((r) => r.action.kind === 'connect' && r.matches(input));
      } catch (err) {
        refusal = isGatewayError(err) ? err : new GatewayError('BAD_REQUEST', undefined, { cause: err });
      }
    }
    if (route === undefined || authority === null) {
      const err =
        refusal ??
        new GatewayError(
          'METHOD_NOT_ALLOWED',
          authority === null
            ? NOT_A_FORWARD_PROXY
            : `no connect route takes CONNECT ${req.url}`,
        );
      const id = requestIdOf(req);
      const bytes = sendErrorOnSocket(socket, err, id);
      this.refused(req, err, id, startedAt, null, bytes);
      return;
    }
    const ctx = new RequestContext(req, startedAt, snapshot.tracing);
    ctx.route = route;
    this.#connect(req, socket as Socket, head, ctx, route, route.action as ConnectAction, authority, snapshot);
  };

  /**
   * `CONNECT` over HTTP/2 (RFC 9113 §8.5), which node:http2 would answer with a bare 405: the
   * gateway's own JSON 405, counted and access-logged. Tunnels are opened over HTTP/1.1 only.
   */
  connectOverHttp2 = (req: IncomingMessage, res: ServerResponse): void => {
    const startedAt = performance.now();
    const authority = req.headers[':authority'];
    req.url = typeof authority === 'string' ? authority : '';
    const err = new GatewayError(
      'METHOD_NOT_ALLOWED',
      this.#published.snapshot.routes.some((r) => r.action.kind === 'connect')
        ? 'CONNECT over HTTP/2 is not supported: send it over HTTP/1.1'
        : NOT_A_FORWARD_PROXY,
    );
    const id = requestIdOf(req);
    this.refused(req, err, id, startedAt, null, sendError(res, err, id));
  };

  #connect(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    ctx: RequestContext,
    route: CompiledRoute,
    action: ConnectAction,
    authority: Authority,
    snapshot: Snapshot,
  ): void {
    let openedAt = 0;
    const done = (status: number, error: string | null) => {
      const metrics = this.#services.metrics;
      const wire = takeWireBytes(socket);
      if (metrics !== null) {
        metrics.request(route.id, 'CONNECT', status, null);
        if (openedAt > 0) metrics.tunnelClosed(route.id, 'connect', (performance.now() - openedAt) / 1000);
        metrics.bytes(route.id, ctx.target, wire.in, wire.out);
      }
      if (snapshot.accessLog) {
        this.#access.write({
          reqId: ctx.id,
          traceId: null,
          method: 'CONNECT',
          url: req.url ?? '',
          route: route.id,
          target: ctx.target,
          status,
          bytes: wire.out,
          durationMs: performance.now() - ctx.startedAt,
          error,
          attempts: null,
        });
      }
    };
    const refuse = (err: GatewayError, extra?: readonly string[]) => {
      sendErrorOnSocket(socket, err, ctx.id, extra);
      // bytesWritten counts the answer queued on the socket too: the line can be written now.
      done(err.status, err.code);
      // A client that keeps its half of the connection open after the answer is not waited for.
      const cut = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS);
      cut.unref();
      socket.once('close', () => clearTimeout(cut));
    };
    if (action.auth !== null && !proxyAuthorized(req.headers['proxy-authorization'] as string | undefined, action.auth)) {
      refuse(new GatewayError('PROXY_AUTH_REQUIRED'), ['proxy-authenticate', action.auth.challenge]);
      return;
    }
    const pool = action.pool === null ? undefined : snapshot.pools.get(action.pool);
    // The downstream may leave while the destination is dialed: the connection is then dropped.
    let gone = false;
    const leave = () => {
      gone = true;
    };
    socket.once('close', leave);
    dialConnect(action, authority, pool, req).then(
      (dialed) => {
        socket.off('close', leave);
        ctx.target = dialed.target;
        if (gone || socket.destroyed) {
          dialed.socket.destroy();
          done(499, 'CLIENT_CLOSED');
          return;
        }
        openedAt = performance.now();
        this.#services.metrics?.tunnelOpened(route.id, 'connect');
        // An open tunnel is in flight: the drain waits for it (within shutdown.grace).
        this.#inflight++;
        pipeTunnel(socket, dialed.socket, head, {
          idleTimeoutMs: route.tunnelIdleTimeoutMs,
          maxDurationMs: action.maxDurationMs,
          open: this.#tunnels,
          onEnd: (error) => {
            done(200, error);
            this.#settled();
          },
        });
      },
      (err: unknown) => {
        socket.off('close', leave);
        const e = isGatewayError(err) ? err : new GatewayError('INTERNAL', undefined, { cause: err });
        if (e.code === 'INTERNAL') this.#services.log.error({ req_id: ctx.id, err }, 'unexpected error');
        if (gone || socket.destroyed) {
          done(499, 'CLIENT_CLOSED');
          return;
        }
        if (e.code === 'DESTINATION_FORBIDDEN')
          this.#services.log.info({ req_id: ctx.id, route: route.id, destination: req.url, reason: e.message }, 'CONNECT refused');
        refuse(e);
      },
    );
  }

  #upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    ctx: RequestContext,
    route: CompiledRoute,
    action: ProxyAction,
    snapshot: Snapshot,
  ): void {
    const protocol = String(req.headers.upgrade ?? 'websocket');
    const attempts: AttemptRecord[] = [];
    ctx.attempts = attempts;
    // Issue 17: the tunnel's open time, once the 101 went out (tunnel metrics).
    let openedAt = 0;
    let done = (status: number, error?: string) => {
      // Counted, but kept out of the duration histogram: a tunnel's lifetime is not a latency.
      const metrics = this.#services.metrics;
      if (metrics !== null) {
        metrics.request(route.id, req.method, status, null);
        metrics.attempts(route.id, action.pool, attempts);
        if (openedAt > 0) metrics.tunnelClosed(route.id, 'upgrade', (performance.now() - openedAt) / 1000);
        const wire = takeWireBytes(socket as Socket);
        metrics.bytes(route.id, ctx.target, wire.in, wire.out);
      }
      if (snapshot.accessLog) {
        this.#access.write({
          reqId: ctx.id,
          traceId: ctx.trace !== null ? ctx.trace.traceId : null,
          method: req.method ?? '',
          url: req.url ?? '',
          route: route.id,
          target: ctx.target,
          status,
          upgrade: true,
          bytes: null,
          // Whole milliseconds, as upgrade lines have always had.
          durationMs: Math.round(performance.now() - ctx.startedAt),
          error: error ?? null,
          attempts,
        });
      }
    };
    const method = req.method ?? 'GET';
    runUpgrade({
      routeId: route.id,
      pool: snapshot.pools.get(action.pool)!,
      pickContext: req,
      spec: action.strategy,
      request: outboundRequest(method, route, null, protocol),
      forward: attemptForward(this.#services.forward, req, ctx, route, action),
      // The route timeout is not armed: it would cut the tunnel's lifetime (unchanged behaviour).
      signal: ctx.deadline,
      replayable: true,
      idempotent: isIdempotent(method),
      attempts,
    }).then(
      (result) => {
        ctx.target = result.target.id;
        if (socket.destroyed) {
          result.abort(new GatewayError('CLIENT_CLOSED'));
          done(499, 'CLIENT_CLOSED');
          return;
        }
        if (result.upgraded !== undefined) {
          openedAt = performance.now();
          this.#services.metrics?.tunnelOpened(route.id, 'upgrade');
          // An open tunnel is in flight: the drain waits for it (within shutdown.grace).
          this.#inflight++;
          const settle = done;
          done = (status, error) => {
            settle(status, error);
            this.#settled();
          };
        }
        tunnel(result, socket, head, protocol, ctx.id, done, {
          via: route.forwarding.via,
          idleTimeoutMs: route.tunnelIdleTimeoutMs,
          open: this.#tunnels,
        });
      },
      (err: unknown) => {
        const e = isGatewayError(err) ? err : new GatewayError('INTERNAL', undefined, { cause: err });
        if (e.code === 'INTERNAL') this.#services.log.error({ req_id: ctx.id, err }, 'unexpected error');
        if (e.code === 'CLIENT_CLOSED') socket.destroy();
        else sendErrorOnSocket(socket, e, ctx.id);
        done(e.code === 'CLIENT_CLOSED' ? 499 : e.status, e.code);
      },
    );
  }
}
