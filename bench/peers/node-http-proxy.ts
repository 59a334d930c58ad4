/**
 * node-http-proxy (the `http-proxy` package) as it is usually deployed: one ProxyServer with a
 * keep-alive agent behind node:http. Usage: node node-http-proxy.ts PORT UPSTREAM_ORIGIN
 */
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const port = Number(process.argv[2]);
const agent = new Agent({ keepAlive: true, maxSockets: 128 });
const proxy = httpProxy.createProxyServer({ target: process.argv[3], agent });
proxy.on('error', (_err, _req, res) => {
  if (!('writeHead' in res)) res.destroy();
  else if (res.headersSent) res.destroy();
  else res.writeHead(502, { 'content-length': 0 }).end();
});

createServer((req, res) => proxy.web(req, res)).listen(port, '127.0.0.1');
process.on('disconnect', () => process.exit(0));
