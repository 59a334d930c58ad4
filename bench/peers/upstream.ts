/**
 * The benchmark upstream: a plain node:http server in its own process, answering the bodies
 * of bodies.ts with Content-Length and keep-alive. Usage: node upstream.ts PORT
 */
import { createServer } from 'node:http';
import { BODIES } from './bodies.ts';

const port = Number(process.argv[2]);
const routes = new Map(
  BODIES.map((b) => [
    b.path,
    { body: b.bytes, headers: { 'content-type': 'text/plain', 'content-length': b.bytes.length } },
  ]),
);

const server = createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  const route = routes.get(req.url ?? '');
  if (route === undefined) {
    res.writeHead(404, { 'content-length': 0 });
    res.end();
    return;
  }
  res.writeHead(200, route.headers);
  res.end(route.body);
});
server.listen(port, '127.0.0.1');
// The parent is gone (even killed with SIGKILL): go too.
process.on('disconnect', () => process.exit(0));
