/**
 * The "naive Node ceiling" of DESIGN.md (Performance targets): node:http in, one undici Pool
 * with `stream()` out, hop-by-hop headers dropped, nothing else. Manifold should reach 0.9× of
 * it with every feature compiled in. Usage: node undici-proxy.ts PORT UPSTREAM_ORIGIN
 *
 * With CERT and KEY (PEM files; the TLS suite) it terminates TLS instead, with node:http2's
 * secure server and `allowHTTP1` (ALPN h2 and http/1.1, as Manifold's TLS listener offers):
 * node undici-proxy.ts PORT UPSTREAM_ORIGIN CERT KEY
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { Pool } from 'undici';
import { HOP_BY_HOP as HOP } from './hop.ts';

const [, , portArg, upstream, certFile, keyFile] = process.argv;
const port = Number(portArg);
const pool = new Pool(upstream, { connections: 128 });

/** Without hop-by-hop headers and HTTP/2 pseudo-headers (`:path`, …; `:authority` is `host`). */
function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const name in headers) if (!HOP.has(name) && name[0] !== ':') out[name] = headers[name];
  if (out.host === undefined && typeof headers[':authority'] === 'string') out.host = headers[':authority'];
  return out;
}

function handle(req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void {
  const bodyless = req.method === 'GET' || req.method === 'HEAD';
  pool
    .stream(
      {
        method: req.method as 'GET',
        path: req.url ?? '/',
        headers: endToEnd(req.headers),
        body: bodyless ? null : req,
        opaque: res,
      },
      ({ statusCode, headers, opaque }) => {
        const out = opaque as ServerResponse;
        out.writeHead(statusCode, endToEnd(headers));
        return out;
      },
    )
    .catch((err: Error) => {
      if (res.headersSent) res.destroy(err);
      else (res as ServerResponse).writeHead(502, { 'content-length': 0 }).end();
    });
}

const server =
  certFile === undefined
    ? createServer(handle)
    : createSecureServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), allowHTTP1: true }, handle);
server.listen(port, '127.0.0.1');
process.on('disconnect', () => process.exit(0));
