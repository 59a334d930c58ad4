/** Small HTTP clients for tests: node:http for ordinary requests, raw sockets for malformed ones. */
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { connect } from 'node:net';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

export function send(
  url: string,
  options: { method?: string; headers?: OutgoingHttpHeaders | string[]; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    // Split by hand: the WHATWG URL parser would normalise the path (dot segments, escapes).
    const m = /^(https?:\/\/[^/]+)(\/.*)?$/.exec(url);
    if (!m) throw new Error(`bad url ${url}`);
    const base = new URL(m[1]);
    const target = { hostname: base.hostname, port: base.port, path: m[2] ?? '/' };
    // A raw header list gets no automatic Host from node:http.
    let headers = options.headers;
    if (Array.isArray(headers) && !headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'host')) {
      headers = [...headers, 'Host', base.host];
    }
    const req = httpRequest({ ...target, method: options.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body,
          text: body.toString(),
          json: () => JSON.parse(body.toString()),
        });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Writes raw bytes and returns everything the server sends until it closes (or `timeoutMs`). */
export function sendRaw(port: number, data: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(out);
    }, timeoutMs);
    socket.on('data', (c) => (out += c.toString('latin1')));
    socket.on('error', (e) => {
      clearTimeout(timer);
      if (out) resolve(out);
      else reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.write(data);
  });
}
