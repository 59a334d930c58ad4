/**
 * Request-body limits. A body with a Content-Length over the limit is refused before it is
 * read; a chunked body is counted as it streams and cut at the limit, so the limit holds
 * without buffering anything.
 */
import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../errors.ts';

export async function* limitBody(req: IncomingMessage, max: number): AsyncGenerator<Buffer> {
  let seen = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    seen += chunk.length;
    if (seen > max) throw new GatewayError('BODY_TOO_LARGE', `request body is larger than ${max} bytes`);
    yield chunk;
  }
}

/** Whether the request carries a body at all (RFC 9112 §6.3). */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
}
