/**
 * A small demo upstream for `npm start`: echoes what it received as JSON, so a curl through
 * the gateway shows the path, the headers the gateway added and which target answered.
 */
import { createServer, type Server } from 'node:http';

export function startDemoUpstream(port: number, name: string): Promise<Server> {
  const server = createServer((req, res) => {
    let size = 0;
    req.on('data', (c: Buffer) => (size += c.length));
    req.on('end', () => {
      const body = JSON.stringify(
        { target: name, method: req.method, url: req.url, headers: req.headers, body_bytes: size },
        null,
        2,
      );
      res.writeHead(200, { 'content-type': 'application/json', 'x-demo-target': name });
      res.end(`${body}\n`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
