/**
 * The multiplex benchmark's targets: one process listening on several ports (one origin each,
 * as a batch to many bidders would reach), answering every request after a fixed delay with a
 * small JSON body. Usage: node upstream.ts DELAY_MS PORT...
 */
import { createServer } from 'node:http';

const delay = Number(process.argv[2]);
const ports = process.argv.slice(3).map(Number);
const body = Buffer.from('{"price":1.25,"currency":"EUR"}');
const headers = { 'content-type': 'application/json', 'content-length': body.length };

for (const port of ports) {
  const server = createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
    req.resume();
    setTimeout(() => {
      res.writeHead(200, headers);
      res.end(body);
    }, delay);
  });
  server.listen(port, '127.0.0.1');
}
// The parent is gone (even killed with SIGKILL): go too.
process.on('disconnect', () => process.exit(0));
