/**
 * The "naive Node ceiling" of DESIGN.md (Performance targets): node:http in, one undici Pool
 * with `stream()` out, hop-by-hop headers dropped, nothing else. Manifold should reach 0.9× of
 * it with every feature compiled in. Usage: node undici-proxy.ts PORT UPSTREAM_ORIGIN
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2]);
const pool = new Pool(process.argv[3], { connections: 128 });
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const name in headers) if (!HOP.has(name)) out[name] = headers[name];
  return out;
}

createServer((req, res) => {
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
      else res.writeHead(502, { 'content-length': 0 }).end();
    });
}).listen(port, '127.0.0.1');
process.on('disconnect', () => process.exit(0));
