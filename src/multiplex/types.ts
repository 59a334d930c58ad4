/**
 * Public types of the multiplex (batch) engine: the validated batch the HTTP layer hands to
 * `MultiplexHandler.run()`, and the JSON-safe answer it gets back (DESIGN.md, request flow 3).
 */

/** Per-item failure codes. They live in the 200 answer, not in the GatewayError catalog. */
export const ITEM_ERRORS = Object.freeze({
  TIMEOUT: 'TIMEOUT',
  DNS: 'DNS',
  CONNECT: 'CONNECT',
  TLS: 'TLS',
  PROTOCOL: 'PROTOCOL',
  BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FORBIDDEN_TARGET: 'FORBIDDEN_TARGET',
  /** The request itself cannot be sent (Octoplex format: a bad uri or header fails its item only). */
  INVALID_REQUEST: 'INVALID_REQUEST',
} as const);

export type ItemErrorCode = keyof typeof ITEM_ERRORS;

/** One request of a batch, after validation and template (`defaults`) merge. */
export interface BatchItem {
  readonly method: string;
  readonly url: URL;
  /** Header pairs in the order given; names are unique case-insensitively. */
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>;
  readonly body: Buffer | null;
  /** Milliseconds from the start of the batch; never more than the batch's `timeoutMs`. */
  readonly timeoutMs: number;
  readonly followRedirects: boolean;
}

export interface Batch {
  /** The shared deadline, in milliseconds from the start of `run()`. */
  readonly timeoutMs: number;
  readonly items: readonly BatchItem[];
  /** `duration_msec` counts from each item's own start (its slot) instead of the batch's. */
  readonly itemClock?: boolean;
}

export type ResponseHeaders = Record<string, string | string[]>;

export interface ItemSuccess {
  status: number;
  headers: ResponseHeaders;
  /** Present when the body is valid UTF-8 (an empty body is `""`). */
  body?: string;
  /** Present instead of `body` when the body is not valid UTF-8. */
  body_base64?: string;
  duration_msec: number;
}

export interface ItemFailure {
  error: { code: ItemErrorCode; message: string };
  duration_msec: number;
}

export type ItemResult = ItemSuccess | ItemFailure;

export interface BatchResult {
  /** One entry per request, in request order. */
  responses: ItemResult[];
}
