/**
 * The admin API (issue 3): fastify on its own port, default 127.0.0.1:8687. Every call needs
 * `Authorization: Bearer <admin.token>` when a token is configured (read per call, so a
 * reload rotates it); compile() refuses a non-loopback bind without one. The dashboard
 * (issue 7) signs a browser in with a cookie derived from the token, good under /dashboard
 * only (see auth.ts). Errors use
 * the gateway's one body shape, `{"error":{"code","message"}}`, naming the field at fault.
 */
import type { AddressInfo } from 'node:net';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Manager } from '../cluster/manager.ts';
import type { Queue } from '../defer/queue.ts';
import { errorBody, GatewayError, isGatewayError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { COOKIE_PATH, CSRF_SAFE, credential, DASHBOARD_HEADER, hostAllowed, originAllowed } from './auth.ts';
import { clusterRoutes } from './routes/cluster.ts';
import { configRoutes } from './routes/config.ts';
import { liveRoutes } from './routes/live.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { dashboardRoutes, PUBLIC_ROUTES } from './routes/dashboard.ts';
import { poolRoutes } from './routes/pools.ts';
import { queueRoutes } from './routes/queue.ts';
import { readyRoutes } from './routes/ready.ts';
import { serverRoutes } from './routes/servers.ts';
import { statsRoutes } from './routes/stats.ts';
import { AJV_OPTIONS } from './schemas.ts';
import { VERSION } from '../version.ts';

export interface AdminServer {
  readonly app: FastifyInstance;
  readonly port: number;
  close(): Promise<void>;
}

/** `body.url: must match format "target-url"` style: where, then what. */
function validationMessage(err: FastifyError): string {
  const where = err.validationContext ?? 'body';
  return (err.validation ?? [])
    .map((v) => {
      const params = v.params as Record<string, unknown>;
      const path = v.instancePath
        .split('/')
        .slice(1)
        .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`))
        .join('');
      if (v.keyword === 'required') return `${where}${path}.${params.missingProperty}: is required`;
      if (v.keyword === 'additionalProperties')
        return `${where}${path}.${params.additionalProperty}: unknown field`;
      if (v.keyword === 'format' && params.format === 'target-url')
        return `${where}${path}: must be an http(s) URL without query, fragment or credentials`;
      if (v.keyword === 'enum')
        return `${where}${path}: must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
      return `${where}${path}: ${v.message}`;
    })
    .join('; ');
}

/** Methods that change state: refused from a foreign `Origin` (issue 15). */
const CHANGES: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Largest admin request body (a pool with many targets fits easily). */
const ADMIN_BODY_LIMIT = 1024 * 1024;

export interface AdminOptions {
  /** The queue of defer routes where this process delivers (issue 6); null while none is open. */
  queue?: () => Queue | null;
  /** True once the gateway began its shutdown: `GET /ready` answers 503. */
  draining?: () => boolean;
}

export function buildAdmin(manager: Manager, log: Logger, options: AdminOptions = {}): FastifyInstance {
  const app = Fastify({
    // Changes are logged by the Manager; fastify's per-request lines would only repeat them.
    loggerInstance: log.child({ component: 'admin' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: ADMIN_BODY_LIMIT,
    // Issue 15: a target id (host:port[/prefix]) can be longer than fastify's default 100,
    // which made such targets impossible to PATCH or DELETE (414) once added.
    routerOptions: { maxParamLength: 2048 },
    ajv: AJV_OPTIONS,
  });

  app.addHook('onRequest', async (req) => {
    // Issue 15: first who the request is for (Host), then where a change comes from (Origin),
    // before any credential: a rebinding or cross-site page gets neither data nor changes.
    const admin = manager.config.admin;
    const rule = { bind: admin.host, allowed: admin.allowed_hosts };
    const local = { address: req.socket.localAddress, port: req.socket.localPort };
    if (!hostAllowed(req.headers.host, rule, local))
      throw new GatewayError('FORBIDDEN_HOST', `Host ${JSON.stringify(req.headers.host ?? '')} is not an address of the admin API (admin.allowed_hosts)`);
    const origin = req.headers.origin;
    if (origin !== undefined && CHANGES.has(req.method) && !originAllowed(origin, rule, local))
      throw new GatewayError('FORBIDDEN_ORIGIN', `a change from origin ${JSON.stringify(origin)} is refused`);
    const token = admin.token;
    if (!token) return;
    // The login form and what it needs; GET /dashboard checks the token itself (it answers
    // the form, not JSON). Matched on the route pattern, so a query string changes nothing.
    if (PUBLIC_ROUTES.has(`${req.method} ${req.routeOptions.url}`) || req.routeOptions.url === '/ready') return;
    const route = req.routeOptions.url ?? '';
    const underDashboard = route === COOKIE_PATH || route.startsWith(`${COOKIE_PATH}/`);
    const by = credential(req.headers, token, underDashboard);
    if (by === null) throw new GatewayError('UNAUTHORIZED');
    if (by === 'cookie' && !CSRF_SAFE.has(req.method) && req.headers[DASHBOARD_HEADER] !== '1')
      throw new GatewayError(
        'FORBIDDEN',
        `a dashboard session needs the ${DASHBOARD_HEADER}: 1 header for ${req.method}`,
      );
  });

  app.setErrorHandler((err: FastifyError | GatewayError, _req, reply) => {
    let e: GatewayError;
    if (isGatewayError(err)) e = err;
    else if (err.validation) e = new GatewayError('INVALID_BODY', validationMessage(err));
    else if (err.statusCode === 413)
      e = new GatewayError('BODY_TOO_LARGE', `an admin request body may have at most ${ADMIN_BODY_LIMIT} bytes`);
    else if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500)
      e = new GatewayError('INVALID_BODY', `body: ${err.message}`);
    else {
      log.error({ err }, 'admin API error');
      e = new GatewayError('INTERNAL');
    }
    if (e.code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
    reply.code(e.status).type('application/json').send(errorBody(e));
  });

  app.setNotFoundHandler((req, reply) => {
    const e = new GatewayError('NOT_FOUND', `no admin endpoint ${req.method} ${req.url.split('?')[0]}`);
    reply.code(e.status).type('application/json').send(errorBody(e));
  });

  // Issue 12: GET /openapi.json, generated from the route schemas registered after this.
  app.register(swagger, {
    openapi: { info: { title: 'Manifold admin API', version: VERSION } },
    hideUntagged: false,
  });
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
  app.register(poolRoutes(manager));
  app.register(serverRoutes(manager));
  app.register(statsRoutes(manager, options.queue ?? (() => null)));
  app.register(configRoutes(manager));
  app.register(clusterRoutes(manager));
  app.register(queueRoutes(options.queue ?? (() => null), manager));
  app.register(metricsRoutes(manager));
  app.register(readyRoutes({ queue: options.queue ?? (() => null), draining: options.draining ?? (() => false) }));
  app.register(liveRoutes(manager, options.queue ?? (() => null)));
  // The same pool and queue calls for the dashboard's session cookie, which only /dashboard
  // routes accept (auth.ts): the page drains, enables and replays through these.
  app.register(poolRoutes(manager), { prefix: `${COOKIE_PATH}/api` });
  app.register(queueRoutes(options.queue ?? (() => null)), { prefix: `${COOKIE_PATH}/api` });
  app.register(dashboardRoutes(manager));
  return app;
}

/** Builds the admin API and binds it to `admin.host:admin.port`. */
export async function startAdmin(
  manager: Manager,
  log: Logger,
  options: AdminOptions = {},
): Promise<AdminServer> {
  const { host, port } = manager.config.admin;
  const app = buildAdmin(manager, log, options);
  await app.listen({ host, port });
  const bound = (app.server.address() as AddressInfo).port;
  log.info({ host, port: bound, token: Boolean(manager.config.admin.token) }, 'admin API listening');
  return { app, port: bound, close: () => app.close() };
}
