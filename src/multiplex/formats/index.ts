/**
 * Batch formats (issue 12): how a multiplex route reads its body and writes its answer. The
 * engine (handler.ts) is one; a format only parses into a `Batch` and renders its results.
 */
import type { GatewayError } from '../../errors.ts';
import type { BatchFormatName, MultiplexOptions } from '../schema.ts';
import type { Batch, ItemResult } from '../types.ts';
import { manifoldFormat } from './manifold.ts';
import { octoplexFormat } from './octoplex.ts';

export interface ParsedBatch {
  /** The items to send. */
  readonly batch: Batch;
  /** Results known before sending (an item that cannot be sent), by request index. */
  readonly decided: ReadonlyMap<number, ItemResult>;
}

export interface BatchFormat {
  /** Throws GatewayError (INVALID_BODY, BODY_TOO_LARGE) for a body that is not a batch. */
  parse(buf: Buffer, opts: MultiplexOptions): ParsedBatch;
  /** The 200 body, one entry per request, in request order. */
  render(responses: readonly ItemResult[]): string;
  /** A whole-batch error in this format's shape; null: the gateway's own renderer. */
  error(err: GatewayError): string | null;
}

export const FORMATS: Readonly<Record<BatchFormatName, BatchFormat>> = Object.freeze({
  manifold: manifoldFormat,
  octoplex: octoplexFormat,
});

/** Every request's result in request order: the decided ones where they were. */
export function mergeResults(parsed: ParsedBatch, ran: readonly ItemResult[]): ItemResult[] {
  if (parsed.decided.size === 0) return ran as ItemResult[];
  const out: ItemResult[] = [];
  let next = 0;
  for (let i = 0; out.length < ran.length + parsed.decided.size; i++) {
    out.push(parsed.decided.get(i) ?? ran[next++]);
  }
  return out;
}
