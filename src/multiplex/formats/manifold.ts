/** Manifold's own batch format (README "Batch: POST /multiplex"); errors go through the one renderer. */
import { parseBatch } from '../batch.ts';
import type { BatchFormat } from './index.ts';

const NONE = new Map();

export const manifoldFormat: BatchFormat = {
  parse: (buf, opts) => ({ batch: parseBatch(buf, opts), decided: NONE }),
  render: (responses) => JSON.stringify({ responses }),
  error: () => null,
};
