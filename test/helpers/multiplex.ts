/** Assertions on one item of a batch answer, shared by the engine and gateway tests. */
import assert from 'node:assert/strict';
import type { ItemFailure, ItemResult, ItemSuccess } from '../../src/multiplex/types.ts';

/** The item is a response (not an error), returned typed. */
export function ok(result: ItemResult | undefined): ItemSuccess {
  assert.ok(result && 'status' in result, `expected a response, got ${JSON.stringify(result)}`);
  return result;
}

/** The item is an error with `code`, returned typed. */
export function failed(result: ItemResult | undefined, code: string): ItemFailure {
  assert.ok(result && 'error' in result, `expected ${code}, got ${JSON.stringify(result)}`);
  assert.equal(result.error.code, code, result.error.message);
  return result;
}
