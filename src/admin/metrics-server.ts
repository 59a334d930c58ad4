/**
 * `metrics.port` (issue 7): the metrics on a port of their own, for scrapers that hold no admin
 * token. Only `GET`/`HEAD <metrics.path>` is served; everything else gets the gateway's JSON
 * error. A plain node:http server: one path does not need the admin API's framework.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Manager } from '../cluster/manager.ts';
import { asyncproxyMetrics } from '../compat/asyncproxy.ts';
import { errorBody, GatewayError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { CONTENT_TYPE } from '../observability/metrics.ts';

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

function sendError(res: ServerResponse, e: GatewayError, extra: Record<string, string> = {}) {
  const body = errorBody(e);
  res.writeHead(e.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...extra,
  });
  res.end(body);
}

export async function startMetricsServer(manager: Manager, log: Logger): Promise<MetricsServer> {
  const { host, port, path } = manager.config.metrics;
  const server: Server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url !== path)
      return sendError(res, new GatewayError('NOT_FOUND', `no endpoint ${url}; metrics are at ${path}`));
    if (req.method !== 'GET' && req.method !== 'HEAD')
      return sendError(res, new GatewayError('METHOD_NOT_ALLOWED', `${req.method} ${path}: use GET`), {
        allow: 'GET, HEAD',
      });
    manager.metrics().then(
      async (registry) => {
        let text = registry === null ? '' : await registry.metrics();
        // Issue 13: asyncproxy's names beside Manifold's, translated from the same registry.
        if (registry !== null && manager.config.metrics.asyncproxy)
          text += asyncproxyMetrics(await registry.getMetricsAsJSON());
        res.writeHead(200, {
          'content-type': CONTENT_TYPE,
          'content-length': Buffer.byteLength(text),
          'cache-control': 'no-store',
        });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        log.error({ err }, 'metrics: scrape failed');
        sendError(res, new GatewayError('INTERNAL'));
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  log.info({ host, port: bound, path }, 'metrics listening');
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
