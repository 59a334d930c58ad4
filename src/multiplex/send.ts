/**
 * Sends one batch item through the handler's dispatcher: follows redirects when asked (undici's
 * redirect interceptor; each hop passes the guard again), decodes gzip/br when the gateway
 * asked for it, and reads the body within the per-item and per-batch byte limits.
 */
import type { Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { Dispatcher } from 'undici';
import type { Deadline } from '../deadline.ts';
import type { BatchItem, ItemErrorCode, ResponseHeaders } from './types.ts';

/** A failure the engine itself decided on (limits, redirects), already classified. */
export class ItemError extends Error {
  readonly code: ItemErrorCode;
  override readonly name = 'ItemError';

  constructor(code: ItemErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The batch-wide response byte allowance (`max_total_bytes`), shared by its items. */
export class ByteBudget {
  readonly limit: number;
  #left: number;

  constructor(limit: number) {
    this.limit = limit;
    this.#left = limit;
  }

  take(n: number): boolean {
    if (n > this.#left) return false;
    this.#left -= n;
    return true;
  }

  give(n: number): void {
    this.#left += n;
  }
}

export interface SendContext {
  readonly dispatcher: Dispatcher;
  readonly maxItemBytes: number;
  readonly maxRedirects: number;
  readonly decompress: boolean;
  readonly budget: ByteBudget;
}

export interface SendResult {
  status: number;
  headers: ResponseHeaders;
  body: Buffer;
}

/** They describe our connection to the target, not the answer the caller gets. */
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding']);
const ACCEPT_ENCODING = 'gzip, br';

const DECODERS: Record<string, () => Transform> = {
  gzip: () => zlib.createGunzip(),
  'x-gzip': () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
};

/** Decoders for a Content-Encoding, outermost coding first; null if one is unknown. */
function decodersFor(encoding: string | string[] | undefined): (() => Transform)[] | null {
  if (encoding === undefined) return [];
  const codings = String(encoding)
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  const out = codings.reverse().map((c) => DECODERS[c]);
  return out.every(Boolean) ? out : null;
}

/**
 * Sends `item` under its deadline (a child of the batch's, the request's one deadline): the
 * deadline ending aborts the request, or the body being read.
 */
export async function sendItem(ctx: SendContext, item: BatchItem, deadline: Deadline): Promise<SendResult> {
  const ownEncoding = item.headers.some(([n]) => n.toLowerCase() === 'accept-encoding');
  const decode = ctx.decompress && !ownEncoding;
  const headers = item.headers.flat();
  if (decode) headers.push('accept-encoding', ACCEPT_ENCODING);
  let res: Dispatcher.ResponseData;
  try {
    // Redirects are undici's redirect interceptor's (RFC 9110 §15.4: 303, and 301/302 after
    // POST, turn into GET; credentials are dropped across origins); each hop is dispatched
    // through the dns interceptor and the guarded connector again (handler.ts).
    res = await ctx.dispatcher.request({
      origin: item.url.origin,
      path: item.url.pathname + item.url.search,
      method: item.method as Dispatcher.HttpMethod,
      headers,
      body: item.body,
      // undici's request() takes an AbortSignal (node:events addAbortListener checks it), so
      // the deadline makes its one here.
      signal: deadline.signal,
      maxRedirections: item.followRedirects ? ctx.maxRedirects : 0,
    } as Dispatcher.RequestOptions);
  } catch (err) {
    throw (item.followRedirects && redirectError(err, ctx.maxRedirects)) || err;
  }
  return read(ctx, res, decode && hasBody(item.method, res));
}

/** The redirect interceptor's refusals, in the item error codes and words batch callers know. */
function redirectError(err: unknown, max: number): ItemError | null {
  const code = (err as { code?: unknown } | null)?.code;
  const message = String((err as Error | null)?.message ?? '');
  if (code === 'UND_ERR_REDIRECT_MAX') return new ItemError('PROTOCOL', `more than ${max} redirects`);
  if (code === 'UND_ERR_INVALID_ARG' && message.startsWith('Redirect loop'))
    return new ItemError('PROTOCOL', `more than ${max} redirects (a redirect loop)`);
  // `Location` not a URL (ERR_INVALID_URL), or not http(s).
  if (code === 'ERR_INVALID_URL' || (code === 'UND_ERR_INVALID_ARG' && message.startsWith('Invalid URL protocol')))
    return new ItemError('PROTOCOL', `redirect to an unsupported location (${message})`);
  return null;
}

/** Whether a response carries body bytes to decode (a decoder fails on none at all). */
function hasBody(method: string, res: Dispatcher.ResponseData): boolean {
  return (
    method !== 'HEAD' &&
    res.statusCode !== 204 &&
    res.statusCode !== 304 &&
    res.headers['content-length'] !== '0'
  );
}

async function read(ctx: SendContext, res: Dispatcher.ResponseData, decode: boolean): Promise<SendResult> {
  const headers: ResponseHeaders = {};
  for (const [name, value] of Object.entries(res.headers)) {
    if (value !== undefined && !CONNECTION_HEADERS.has(name)) headers[name] = value;
  }
  const decoders = decode ? decodersFor(res.headers['content-encoding']) : [];
  const decoding = decoders !== null && decoders.length > 0;
  if (decoding) {
    delete headers['content-encoding'];
    delete headers['content-length'];
  } else if (Number(res.headers['content-length']) > ctx.maxItemBytes) {
    discard(res.body);
    throw tooLarge(ctx);
  }
  const stages: Readable[] = [res.body];
  if (decoding) {
    for (const make of decoders) {
      const stage = make();
      const prev = stages[stages.length - 1];
      prev.on('error', (err) => stage.destroy(err));
      stages.push(prev.pipe(stage));
    }
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    await collect(stages[stages.length - 1], (chunk) => {
      if (size + chunk.length > ctx.maxItemBytes) throw tooLarge(ctx);
      if (!ctx.budget.take(chunk.length)) {
        throw new ItemError(
          'BODY_TOO_LARGE',
          `responses of this batch exceed max_total_bytes (${ctx.budget.limit})`,
        );
      }
      size += chunk.length;
      chunks.push(chunk);
    });
  } catch (err) {
    ctx.budget.give(size);
    for (const stage of stages) discard(stage);
    throw err;
  }
  return { status: res.statusCode, headers, body: Buffer.concat(chunks, size) };
}

/**
 * Feeds every chunk of `stream` to `take` until it ends; rejects with the stream's error, with
 * what `take` throws, or when the stream closes before its end. Listeners rather than
 * `for await`: an async iterator per response was a measurable share of a batch's CPU time
 * (`npm run bench -- multiplex`), and a batch reads up to max_requests bodies at once.
 */
function collect(stream: Readable, take: (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: unknown) => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', done);
      stream.off('close', onClose);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onData = (chunk: Buffer) => {
      try {
        take(chunk);
      } catch (err) {
        done(err);
      }
    };
    const onEnd = () => done();
    const onClose = () =>
      done(Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', done);
    stream.on('close', onClose);
  });
}

/** Destroys a stream we gave up on; its late 'error' (undici: "Request aborted") is expected. */
function discard(stream: Readable): void {
  stream.on('error', () => {});
  stream.destroy();
}

function tooLarge(ctx: SendContext): ItemError {
  return new ItemError('BODY_TOO_LARGE', `response body exceeds max_item_bytes (${ctx.maxItemBytes})`);
}
