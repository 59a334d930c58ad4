/**
 * The heavy-tailed targets of the hedge suite, in their own process: one node:http server per
 * port given, each request answered after ~5 ms (95%) or ~500 ms (5%), drawn independently per
 * request, so a hedge sent to another target is usually fast. `GET /__count` answers the
 * number of requests this server has seen (itself not counted): the suite's measure of upstream
 * load, hedges and aborted losers included. Exits when the parent's IPC channel closes.
 *
 * usage: node bench/hedge/upstream.ts PORT [PORT…]
 */
import { createServer } from 'node:http';

const FAST_MS = 5;
const SLOW_MS = 500;
const SLOW_SHARE = 0.05;
/** ±20% around each mode, so the distribution is not two spikes. */
const JITTER = 0.2;

const body = Buffer.from('ok\n');

for (const port of process.argv.slice(2).map(Number)) {
  let count = 0;
  const server = createServer((req, res) => {
    if (req.url === '/__count') {
      res.end(String(count));
      return;
    }
    count++;
    const base = Math.random() < SLOW_SHARE ? SLOW_MS : FAST_MS;
    const delay = base * (1 - JITTER + 2 * JITTER * Math.random());
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    }, delay);
    // A hedge loser is aborted by the gateway: stop its timer with it.
    res.on('close', () => clearTimeout(timer));
  });
  server.keepAliveTimeout = 30_000;
  server.listen(port, '127.0.0.1');
}

process.on('disconnect', () => process.exit(0));
