/** The downstream end of a proxied answer (actions/proxy.ts `relay`). */
import type { ServerResponse } from 'node:http';
import type { GatewayError } from '../../errors.ts';
import type { BodySink, Trailers } from '../../proxy/forward.ts';
import { endToEndTrailers } from '../../proxy/headers.ts';
import type { RequestContext } from '../context.ts';
import { endHeadOnly, isHttp2 } from '../respond.ts';

/**
 * Streams the winning answer downstream. The head is written with the first body byte (or the
 * end), which is when node:http (HTTP/1) would send it anyway: a target whose body fails before any
 * byte of it (a bad chunk size in the first read, issue 15 item 12) still gets its client a
 * 502 JSON instead of a cut connection.
 */
export class ResponseSink implements BodySink {
  readonly #res: ServerResponse;
  readonly #ctx: RequestContext;
  /** The head not written yet (status 0 once written). */
  #status: number;
  readonly #headers: string[];
  readonly #fail: (err: GatewayError) => void;
  #resume: (() => void) | null = null;
  /** A 'drain' listener is on the response: added only when a write returned false. */
  #waiting = false;
  constructor(
    res: ServerResponse,
    ctx: RequestContext,
    status: number,
    headers: string[],
    fail: (err: GatewayError) => void,
  ) {
    this.#res = res;
    this.#ctx = ctx;
    this.#status = status;
    this.#headers = headers;
    this.#fail = fail;
    // HTTP/2 (the compat response has a stream) sends HEADERS at writeHead: keep that, so a
    // slow first byte (long poll, event stream) does not hold the head back. Except a gRPC
    // trailers-only answer (`grpc-status` in the head): it has no body, and its HEADERS must
    // carry END_STREAM (respond.ts endHeadOnly), so it waits for the end.
    if (isHttp2(res) && !hasGrpcStatus(headers)) this.#writeHead();
  }
  #writeHead(): void {
    const status = this.#status;
    this.#status = 0;
    this.#res.writeHead(status, this.#headers);
  }
  write(chunk: Buffer): boolean {
    if (this.#status !== 0) this.#writeHead();
    this.#ctx.bytesOut += chunk.length;
    const open = this.#res.write(chunk);
    if (!open && !this.#waiting && this.#resume !== null) {
      this.#waiting = true;
      this.#res.once('drain', this.#drained);
    }
    return open;
  }
  #drained = (): void => {
    this.#waiting = false;
    this.#resume?.();
  };
  end(trailers?: Trailers | null): void {
    if (this.#status !== 0 && !trailers) {
      const status = this.#status;
      this.#status = 0;
      endHeadOnly(this.#res, status, this.#headers);
      return;
    }
    if (this.#status !== 0) this.#writeHead();
    // Trailers go out on HTTP/2 and on a chunked HTTP/1.1 answer (node:http drops them otherwise).
    if (trailers) this.#res.addTrailers(endToEndTrailers(trailers));
    this.#res.end();
  }
  /** The last chunk of a body that came whole (already ended): with the head and the end in one `res.end()`. */
  endWith(chunk: Buffer, trailers: Trailers | null): void {
    if (this.#status !== 0) this.#writeHead();
    this.#ctx.bytesOut += chunk.length;
    if (trailers) this.#res.addTrailers(endToEndTrailers(trailers));
    this.#res.end(chunk);
  }
  error(err: GatewayError): void {
    if (this.#status !== 0 && !this.#res.destroyed) {
      this.#status = 0;
      this.#fail(err);
      return;
    }
    this.#ctx.errorCode = err.code;
    this.#res.destroy(err);
  }
  onDrain(resume: () => void): void {
    this.#resume = resume;
  }
}

function hasGrpcStatus(headers: readonly string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === 'grpc-status') return true;
  return false;
}
