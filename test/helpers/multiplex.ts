/**
 * What the engine and gateway tests of multiplex share: assertions on one item of a batch
 * answer, and the fixed answers of their targets.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
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

/**
 * The answers every multiplex test target gives: `/ok` 200 "hello", `/404` "nope", `/raw` the
 * request body back as it came, `/binary` four bytes that are not UTF-8. False for any other
 * path (the test's own routes).
 */
export function fixedAnswer(pathname: string, body: Buffer, res: ServerResponse): boolean {
  switch (pathname) {
    case '/ok':
      res.writeHead(200, { 'content-type': 'text/plain' }).end('hello');
      return true;
    case '/404':
      res.writeHead(404).end('nope');
      return true;
    case '/raw':
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
      return true;
    case '/binary':
      res.writeHead(200).end(Buffer.from([0xff, 0x00, 0xfe, 0x80]));
      return true;
    default:
      return false;
  }
}
