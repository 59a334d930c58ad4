/**
 * The admin API (issue 3): fastify on its own port, default 127.0.0.1:8687. Every call needs
 * `Authorization: Bearer <admin.token>` when a token is configured (read per call, so a
 * reload rotates it); compile() refuses a non-loopback bind without one. Errors use the
 * gateway's one body shape, `{"error":{"code","message"}}`, naming the field at fault.
 */
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Manager } from '../cluster/manager.ts';
import type { Queue } from '../defer/queue.ts';
import { errorBody, GatewayError, isGatewayError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { configRoutes } from './routes/config.ts';
import { poolRoutes } from './routes/pools.ts';
import { queueRoutes } from './routes/queue.ts';
import { serverRoutes } from './routes/servers.ts';
import { statsRoutes } from './routes/stats.ts';
import { AJV_OPTIONS } from './schemas.ts';

export interface AdminServer {
  readonly app: FastifyInstance;
  readonly port: number;
  close(): Promise<void>;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  if (header === undefined || !header.startsWith('Bearer ')) return false;
  const given = Buffer.from(header.slice(7).trim());
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
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

export interface AdminOptions {
  /** The queue of defer routes where this process delivers (issue 6); null while none is open. */
  queue?: () => Queue | null;
}

export function buildAdmin(manager: Manager, log: Logger, options: AdminOptions = {}): FastifyInstance {
  const app = Fastify({
    // Changes are logged by the Manager; fastify's per-request lines would only repeat them.
    loggerInstance: log.child({ component: 'admin' }, { level: 'warn' }) as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    ajv: AJV_OPTIONS,
  });

  app.addHook('onRequest', async (req) => {
    const token = manager.config.admin.token;
    if (token && !tokenMatches(req.headers.authorization, token)) throw new GatewayError('UNAUTHORIZED');
  });

  app.setErrorHandler((err: FastifyError | GatewayError, _req, reply) => {
    let e: GatewayError;
    if (isGatewayError(err)) e = err;
    else if (err.validation) e = new GatewayError('INVALID_BODY', validationMessage(err));
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

  app.register(poolRoutes(manager));
  app.register(serverRoutes(manager));
  app.register(statsRoutes(manager));
  app.register(configRoutes(manager));
  app.register(queueRoutes(options.queue ?? (() => null)));
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
