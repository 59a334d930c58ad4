/**
 * The replay buffer (issue #4 point 4, STYLE.md §10 and "Partial replay of request bodies"):
 * a body is read into memory only when the route's strategy may send it more than once and it
 * fits in `max_replay_bytes`. A Content-Length over the limit is not read at all; a chunked body
 * is read up to the limit and, when it goes past, the part read is sent first and the rest
 * streams behind it, to one target only. A partly consumed stream is never retried.
 */
import type { Readable } from 'node:stream';
import type { AbortHook } from '../deadline.ts';
import { GatewayError, isGatewayError } from '../errors.ts';
import type { OutboundRequest } from '../proxy/forward.ts';
import type { StrategySpec } from './types.ts';

export interface PreparedBody {
  body: OutboundRequest['body'];
  /** The body may be sent again: none, or a Buffer. */
  replayable: boolean;
}

async function* rest(head: Buffer[], it: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  yield* head;
  for (;;) {
    const r = await it.next();
    if (r.done) return;
    yield r.value;
  }
}

/**
 * `body` is the downstream body as the pipeline would stream it (already wrapped by the route's
 * `max_body_bytes` limit); `declared` its Content-Length, if any. Reading stops with the route's
 * deadline (`signal`).
 */
export async function prepareBody(
  body: Readable | AsyncIterable<Buffer> | null,
  declared: number | undefined,
  spec: StrategySpec,
  signal: AbortHook,
): Promise<PreparedBody> {
  if (body === null) return { body: null, replayable: true };
  if (spec.name === 'single' || (declared !== undefined && declared > spec.maxReplayBytes)) {
    return { body, replayable: false };
  }
  const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => {});
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for (;;) {
      const r = await Promise.race([it.next(), aborted]);
      if (r.done) return { body: Buffer.concat(chunks, size), replayable: true };
      chunks.push(r.value);
      size += r.value.length;
      if (size > spec.maxReplayBytes) return { body: rest(chunks, it), replayable: false };
    }
  } catch (err) {
    if (isGatewayError(err)) throw err;
    throw new GatewayError('CLIENT_CLOSED', 'the request body could not be read', { cause: err });
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}
