/**
 * The receiving target of the defer benchmark: answers 204 to every delivery and counts them;
 * `GET /__count` answers the count and the time of the last delivery (ms since the epoch).
 * Usage: node receiver.ts PORT
 */
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
let count = 0;
let last = 0;

const server = createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
  if (req.url === '/__count') {
    const body = JSON.stringify({ count, last });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
    return;
  }
  req.resume();
  req.on('end', () => {
    count++;
    last = Date.now();
    res.writeHead(204);
    res.end();
  });
});
server.listen(port, '127.0.0.1');
// The parent is gone (even killed with SIGKILL): go too.
process.on('disconnect', () => process.exit(0));
