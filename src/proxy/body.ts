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
  if (req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0') return true;
  // HTTP/2 (issue 14) frames a body without either header: the HEADERS frame that did not end
  // the stream says one follows.
  const stream = (req as { stream?: { endAfterHeaders: boolean } }).stream;
  return stream !== undefined && !stream.endAfterHeaders;
}

/**
 * Reads a whole request body into memory, at most `max` bytes: a declared Content-Length over
 * it is refused before reading, a chunked body at the chunk that crosses it (413 either way;
 * the request is left paused, and the refusal closes the connection). For actions that need
 * the body whole (multiplex batches); the proxy path streams instead. The downstream hanging
 * up mid-body is CLIENT_CLOSED, not an internal error.
 */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > max) {
    return Promise.reject(
      new GatewayError('BODY_TOO_LARGE', `request body of ${declared} bytes is larger than ${max}`),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let seen = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onClose);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen <= max) {
        chunks.push(chunk);
        return;
      }
      stop();
      req.pause();
      reject(new GatewayError('BODY_TOO_LARGE', `request body is larger than ${max} bytes`));
    };
    const onEnd = () => {
      stop();
      resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, seen));
    };
    const onClose = (err?: Error) => {
      stop();
      reject(new GatewayError('CLIENT_CLOSED', undefined, err ? { cause: err } : undefined));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onClose);
    req.on('close', onClose);
  });
}
