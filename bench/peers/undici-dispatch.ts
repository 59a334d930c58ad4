/**
 * The floor under every Node proxy built on node:http and undici: nothing but forwarding.
 * node:http in, undici `Pool.dispatch()` out with a bare dispatch handler (no `stream()`, no
 * promise, no Writable), request headers passed as the flat raw list, hop-by-hop fields dropped
 * both ways, a body that arrived whole sent with its head in one `res.end()`. No request id, no
 * forwarding headers, no log, no metrics, no limits. What Manifold's ratios to the peers can be
 * read against: a proxy with any feature on top of the same two libraries spends more than this.
 * Usage: node undici-dispatch.ts PORT UPSTREAM_ORIGIN
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type Dispatcher, Pool } from 'undici';
import { HOP_BY_HOP as HOP } from './hop.ts';

const [, , portArg, upstream] = process.argv;
const pool = new Pool(upstream, { connections: 128 });
const origin = new URL(upstream).origin;

class Relay implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse;
  #status = 0;
  #headers: string[] = [];
  /** Body chunks held until a second one shows the body is not whole in one read. */
  #held: Buffer[] | null = null;
  #headSent = false;
  constructor(res: ServerResponse) {
    this.#res = res;
  }
  // undici takes a handler with onRequestStart for its current (controller) API.
  onRequestStart(): void {}
  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    this.#status = status;
    const out = this.#headers;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined || HOP.has(name)) continue;
      if (typeof value === 'string') out.push(name, value);
      else for (const v of value) out.push(name, v);
    }
  }
  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#headSent) {
      (this.#held ??= []).push(chunk);
      if (this.#held.length === 1) return;
      this.#sendHead();
      return;
    }
    if (!this.#res.write(chunk)) {
      c.pause();
      this.#res.once('drain', () => c.resume());
    }
  }
  #sendHead(): void {
    this.#headSent = true;
    this.#res.writeHead(this.#status, this.#headers);
    const held = this.#held ?? [];
    this.#held = null;
    for (const chunk of held) this.#res.write(chunk);
  }
  onResponseEnd(): void {
    if (this.#headSent) {
      this.#res.end();
      return;
    }
    this.#headSent = true;
    this.#res.writeHead(this.#status, this.#headers);
    this.#res.end(this.#held?.[0]);
  }
  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.#headSent || this.#res.headersSent) this.#res.destroy(err);
    else this.#res.writeHead(502, ['content-length', '0']).end();
  }
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const raw = req.rawHeaders;
  const headers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1]);
  const bodyless = req.method === 'GET' || req.method === 'HEAD';
  pool.dispatch(
    { origin, method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: bodyless ? null : req },
    new Relay(res),
  );
}

createServer(handle).listen(Number(portArg), '127.0.0.1');
process.on('disconnect', () => process.exit(0));
