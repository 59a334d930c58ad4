/**
 * The TLS suite's floor: node:http2's secure server with `allowHTTP1` (ALPN h2 and http/1.1)
 * answering the bodies of bodies.ts itself, no proxying. What it costs per request is what
 * terminating TLS and speaking HTTP costs in Node, before any proxy work.
 * Usage: node tls-server.ts PORT CERT KEY
 */
import { readFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import { BODIES } from './bodies.ts';

const [, , portArg, certFile, keyFile] = process.argv;
const routes = new Map(
  BODIES.map((b) => [
    b.path,
    { body: b.bytes, headers: { 'content-type': 'text/plain', 'content-length': b.bytes.length } },
  ]),
);

const server = createSecureServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile), allowHTTP1: true },
  (req, res) => {
    const route = routes.get(req.url ?? '');
    if (route === undefined) {
      res.writeHead(404, { 'content-length': 0 });
      res.end();
      return;
    }
    res.writeHead(200, route.headers);
    res.end(route.body);
  },
);
server.listen(Number(portArg), '127.0.0.1');
process.on('disconnect', () => process.exit(0));
